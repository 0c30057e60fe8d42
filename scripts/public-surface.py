#!/usr/bin/env python3
# Counts the documented public surface of the library (doc(hidden) items left out) from
# rustdoc's JSON: run
#   CARGO_TARGET_DIR=/tmp/rdj cargo +nightly rustdoc --lib --features fs1-metrics,archive -- -Z unstable-options --output-format json
#   scripts/public-surface.py [/tmp/rdj/doc/wal_recorder.json] [fn,method,...]
# Re-exports (`pub use`) are counted as such, not followed.
import json,collections,sys
path=sys.argv[1] if len(sys.argv)>1 and sys.argv[1].endswith('.json') else '/tmp/rdj/doc/wal_recorder.json'
kinds=[a for a in sys.argv[1:] if not a.endswith('.json')]
d=json.load(open(path))
idx=d['index']; paths=d['paths']
# walk from root module over public items
root=idx[str(d['root'])] if str(d['root']) in idx else idx[d['root']]
out=[]
seen=set()
def name_of(i): return i.get('name')
def walk(item,prefix):
    iid=item['id']
    if iid in seen: return
    seen.add(iid)
    inner=item['inner']; kind=list(inner)[0]
    if item.get('visibility')!='public' and kind not in ('impl',): return
    hidden = any('doc(hidden)' in str(a) for a in item.get('attrs',[]))
    if hidden: return
    nm=item.get('name')
    path=prefix+('::'+nm if nm else '')
    if kind=='module':
        for c in inner['module']['items']:
            walk(idx[str(c)],path)
    elif kind=='use':
        u=inner['use']
        if u.get('id') is not None and str(u['id']) in idx:
            tgt=idx[str(u['id'])]
            if u.get('is_glob'): return
            # re-export: record but don't double count
            out.append(('use',path, ''))
    elif kind in ('struct','enum','trait','union'):
        out.append((kind,path,item.get('span',{}).get('filename','')))
        impls=inner[kind].get('impls',[])
        for im in impls:
            imi=idx[str(im)]
            ii=imi['inner']['impl']
            if ii.get('trait') is not None: continue
            for c in ii['items']:
                ci=idx[str(c)]
                if ci.get('visibility')=='public' and 'function' in ci['inner']:
                    out.append(('method',path+'::'+ci['name'],ci.get('span',{}).get('filename','')))
        if kind=='struct':
            k=inner['struct']['kind']
            if isinstance(k,dict) and 'plain' in k:
                for f in k['plain']['fields']:
                    fi=idx[str(f)]
                    if fi.get('visibility')=='public':
                        out.append(('field',path+'.'+fi['name'],''))
    elif kind=='function':
        out.append(('fn',path,item.get('span',{}).get('filename','')))
    else:
        out.append((kind,path,''))
walk(root,'')
c=collections.Counter(k for k,_,_ in out)
print(c)
if kinds:
    for k,p,f in out:
        if k in kinds[0].split(','): print(k,p,f)
