//! The object store behind an archive URL, and the few operations the archive tier needs:
//! put a segment (multipart when large) with its checksum in the object's metadata, check
//! an object against the local size and CRC32C, get, list, and the manifest object.

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, GetOptions, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, RetryConfig, WriteMultipart,
};

use crate::config::archive::ArchiveConfig;
use crate::error::{Error, Result};

/// Name of the manifest object under the prefix.
pub const MANIFEST: &str = "manifest.json";

/// What the object says about itself; `Ok` when it matches the local bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Size and checksum agree.
    Ok,
    /// No such object.
    Missing,
    /// Present but different (a truncated or foreign upload).
    Mismatch(String),
}

/// The checksum and sequence range stored with a segment object.
#[derive(Debug, Clone, Copy)]
pub struct ObjectFacts {
    pub crc32c: u32,
    pub first_seq: u64,
    pub last_seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// S3 and compatibles: user metadata is kept and returned by HEAD.
    S3,
    /// A local (or NFS) directory: no metadata, so checks read the object back.
    Local,
}

/// An opened archive location.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: ObjPath,
    kind: Kind,
    url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

/// Wraps an `object_store` error with the object it concerns and a hint for the usual
/// causes.
pub(crate) fn store_err(target: &str, op: &'static str, e: object_store::Error) -> Error {
    let text = e.to_string();
    let message = match &e {
        _ if text.contains("InvalidAccessKeyId") || text.contains("SignatureDoesNotMatch") => {
            format!("wrong credentials (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY): {text}")
        }
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => format!(
            "access denied (check the credentials in AWS_ACCESS_KEY_ID / \
             AWS_SECRET_ACCESS_KEY and the bucket policy): {text}"
        ),
        _ if text.contains("NoSuchBucket") => format!("the bucket does not exist: {text}"),
        _ => text,
    };
    Error::Archive {
        target: target.to_string(),
        op,
        message,
    }
}

fn config_err(url: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("archive URL {url}: {why}"))
}

impl Store {
    /// Opens the store for `cfg.url` (no request is made; see [`Self::probe`]).
    pub fn open(cfg: &ArchiveConfig) -> Result<Store> {
        let url = cfg.url.trim_end_matches('/').to_string();
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(config_err(&url, "no bucket"));
            }
            // Timeouts first: `with_client_options` replaces every client option, so the
            // environment (AWS_ALLOW_HTTP, ...) and the caller's options come after it.
            let client = ClientOptions::new()
                .with_timeout(cfg.request_timeout)
                .with_connect_timeout(cfg.connect_timeout);
            let mut b = AmazonS3Builder::new()
                .with_client_options(client)
                .with_bucket_name(bucket);
            for (k, v) in std::env::vars() {
                if k.starts_with("AWS_") {
                    if let Ok(key) = k.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                        b = b.with_config(key, v);
                    }
                }
            }
            for (k, v) in &cfg.options {
                let key: AmazonS3ConfigKey = k
                    .parse()
                    .map_err(|e| config_err(&url, format!("option {k}: {e}")))?;
                b = b.with_config(key, v);
            }
            if b.get_config_value(&AmazonS3ConfigKey::Region).is_none() {
                b = b.with_region("us-east-1");
            }
            // An explicitly configured http:// endpoint (MinIO, moto, a local gateway) is
            // meant to be used as such.
            if b.get_config_value(&AmazonS3ConfigKey::Endpoint)
                .is_some_and(|e| e.starts_with("http://"))
            {
                b = b.with_allow_http(true);
            }
            let retry = RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: cfg.retry.min_backoff,
                    max_backoff: cfg.retry.max_backoff,
                    base: 2.0,
                },
                max_retries: cfg.retry.request_retries,
                retry_timeout: cfg.request_timeout * (cfg.retry.request_retries as u32 + 1),
            };
            let s3 = b
                .with_retry(retry)
                .build()
                .map_err(|e| store_err(&url, "open", e))?;
            Ok(Store {
                inner: Arc::new(s3),
                prefix: ObjPath::from(prefix),
                kind: Kind::S3,
                url,
            })
        } else if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(config_err(&url, "a file:// URL needs an absolute path"));
            }
            std::fs::create_dir_all(path).map_err(|e| Error::io("create archive dir", path, e))?;
            let local =
                LocalFileSystem::new_with_prefix(path).map_err(|e| store_err(&url, "open", e))?;
            Ok(Store {
                inner: Arc::new(local),
                prefix: ObjPath::default(),
                kind: Kind::Local,
                url,
            })
        } else {
            Err(config_err(&url, "must start with s3:// or file://"))
        }
    }

    /// The URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of object `name`, for messages.
    pub fn target(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    fn path(&self, name: &str) -> ObjPath {
        self.prefix.child(name)
    }

    /// Uploads `data` as `name`; multipart from `cfg.multipart_threshold` bytes on.
    pub async fn put_segment(
        &self,
        name: &str,
        data: Vec<u8>,
        facts: ObjectFacts,
        cfg: &ArchiveConfig,
    ) -> Result<()> {
        let target = self.target(name);
        let mut attributes = Attributes::new();
        if self.kind == Kind::S3 {
            let meta = [
                ("crc32c", format!("{:08x}", facts.crc32c)),
                ("first-seq", facts.first_seq.to_string()),
                ("last-seq", facts.last_seq.to_string()),
            ];
            for (k, v) in meta {
                attributes.insert(Attribute::Metadata(k.into()), v.into());
            }
            attributes.insert(Attribute::ContentType, "application/x-lz4".into());
        }
        let path = self.path(name);
        if data.len() as u64 >= cfg.multipart_threshold {
            let opts = PutMultipartOptions {
                attributes,
                ..Default::default()
            };
            let upload = self
                .inner
                .put_multipart_opts(&path, opts)
                .await
                .map_err(|e| store_err(&target, "start multipart upload", e))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, cfg.part_size);
            w.write(&data);
            w.finish()
                .await
                .map_err(|e| store_err(&target, "multipart upload", e))?;
        } else {
            let opts = PutOptions {
                attributes,
                ..Default::default()
            };
            self.inner
                .put_opts(&path, PutPayload::from(data), opts)
                .await
                .map_err(|e| store_err(&target, "put", e))?;
        }
        Ok(())
    }

    /// Compares object `name` with the local `len` and `crc32c`: its size and the checksum in
    /// its metadata (S3), or its bytes read back (a local directory keeps no metadata).
    pub async fn check(&self, name: &str, len: u64, crc32c: u32) -> Result<Check> {
        let target = self.target(name);
        let path = self.path(name);
        let head = self.kind == Kind::S3;
        let opts = GetOptions {
            head,
            ..Default::default()
        };
        let r = match self.inner.get_opts(&path, opts).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(Check::Missing),
            Err(e) => return Err(store_err(&target, "head", e)),
        };
        if r.meta.size != len {
            return Ok(Check::Mismatch(format!(
                "{} bytes in the store, {len} here",
                r.meta.size
            )));
        }
        let stored = if head {
            let key = Attribute::Metadata("crc32c".into());
            match r.attributes.get(&key) {
                Some(v) => u32::from_str_radix(v.as_ref(), 16).ok(),
                None => None,
            }
        } else {
            let bytes = r.bytes().await.map_err(|e| store_err(&target, "get", e))?;
            Some(crc32c::crc32c(&bytes))
        };
        Ok(match stored {
            Some(c) if c == crc32c => Check::Ok,
            Some(c) => Check::Mismatch(format!("checksum {c:08x} in the store, {crc32c:08x} here")),
            None => Check::Mismatch("no crc32c in the object's metadata".into()),
        })
    }

    /// The bytes of object `name`; `None` if there is none. A missing bucket is an error.
    pub async fn get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let target = self.target(name);
        let r = match self.inner.get(&self.path(name)).await {
            Ok(r) => r,
            Err(e @ object_store::Error::NotFound { .. })
                if e.to_string().contains("NoSuchBucket") =>
            {
                return Err(store_err(&target, "get", e))
            }
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_err(&target, "get", e)),
        };
        let bytes = r.bytes().await.map_err(|e| store_err(&target, "get", e))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Writes object `name` in one request (the manifest).
    pub async fn put_small(&self, name: &str, data: Vec<u8>) -> Result<()> {
        self.inner
            .put(&self.path(name), PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|e| store_err(&self.target(name), "put", e))
    }
}
