//! `Channel`: one replication connection, plain TCP or TLS (rustls), on a non-blocking
//! socket, so one thread can ship records and read acknowledgements without either waiting
//! on the other. Frames go out through [`Channel::send`] + [`Channel::flush`] and come in
//! through [`Channel::recv`]; nothing here blocks except [`Channel::wait`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::wire::{BadFrame, Frame, MAX_FRAME};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Why a connection ended.
#[derive(Debug)]
pub(crate) enum ChannelError {
    /// The socket or TLS failed, or the peer closed it.
    Io(io::Error),
    /// The peer sent a frame that cannot be accepted.
    Bad(BadFrame),
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelError::Io(e) => write!(f, "{e}"),
            ChannelError::Bad(b) => write!(f, "bad frame: {}", b.0),
        }
    }
}

impl From<io::Error> for ChannelError {
    fn from(e: io::Error) -> Self {
        ChannelError::Io(e)
    }
}

pub(crate) type ChannelResult<T> = Result<T, ChannelError>;

/// A socket whose writes never raise SIGPIPE: a peer that went away is an `EPIPE` error
/// here, not the death of a process that keeps SIGPIPE's default action (`walctl`, C and
/// C++ programs). `write_vectored` (what rustls uses) would be `writev`, which raises it.
struct NoSigPipe(TcpStream);

impl Read for NoSigPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for NoSigPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the duration of the call,
        // and the descriptor is this socket's own.
        let n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        match n {
            n if n >= 0 => Ok(n as usize),
            _ => Err(io::Error::last_os_error()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// See the module docs.
pub(crate) struct Channel {
    sock: NoSigPipe,
    peer: SocketAddr,
    tls: Option<rustls::Connection>,
    /// Plain TCP: encoded bytes not yet written.
    out: Vec<u8>,
    /// Bytes of `out` already written.
    out_at: usize,
    /// Decrypted bytes received, not yet taken as frames.
    inbuf: Vec<u8>,
    /// Bytes of `inbuf` already taken.
    in_at: usize,
    closed: bool,
}

impl Channel {
    /// Wraps a connected socket; `tls` is the rustls side (client or server), if any.
    pub(crate) fn new(sock: TcpStream, tls: Option<rustls::Connection>) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        sock.set_nodelay(true)?;
        let peer = sock.peer_addr()?;
        Ok(Channel {
            sock: NoSigPipe(sock),
            peer,
            tls,
            out: Vec::with_capacity(2 * super::wire::BATCH_BYTES),
            out_at: 0,
            inbuf: Vec::with_capacity(2 * READ_CHUNK),
            in_at: 0,
            closed: false,
        })
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The buffer frames are encoded into: appended bytes are sent by [`Self::flush`].
    pub(crate) fn out_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Queues one frame.
    pub(crate) fn send(&mut self, frame: &Frame) {
        frame.encode(&mut self.out);
    }

    /// Bytes queued and not yet handed to the socket.
    pub(crate) fn pending(&self) -> usize {
        let tls = self
            .tls
            .as_ref()
            .map_or(0, |t| usize::from(t.wants_write()));
        self.out.len() - self.out_at + tls
    }

    /// Writes what the socket takes now; `Ok(true)` once everything queued is written.
    pub(crate) fn flush(&mut self) -> ChannelResult<bool> {
        if let Some(tls) = self.tls.as_mut() {
            loop {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.sock) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                if self.out_at == self.out.len() {
                    self.out.clear();
                    self.out_at = 0;
                    return Ok(true);
                }
                // rustls takes what fits its send buffer; the rest waits for the next turn.
                let n = tls.writer().write(&self.out[self.out_at..])?;
                assert!(
                    n > 0 || tls.wants_write(),
                    "rustls took nothing with nothing to send"
                );
                self.out_at += n;
            }
        }
        while self.out_at < self.out.len() {
            match self.sock.write(&self.out[self.out_at..]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => self.out_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.out.clear();
        self.out_at = 0;
        Ok(true)
    }

    /// The next whole frame received, reading what the socket holds now; `Ok(None)` when no
    /// whole frame is there yet. A closed connection is an error once its frames are taken.
    pub(crate) fn recv(&mut self) -> ChannelResult<Option<Frame>> {
        loop {
            match Frame::decode(&self.inbuf[self.in_at..]).map_err(ChannelError::Bad)? {
                Some((frame, used)) => {
                    self.in_at += used;
                    if self.in_at == self.inbuf.len() {
                        self.inbuf.clear();
                        self.in_at = 0;
                    }
                    return Ok(Some(frame));
                }
                None if self.closed => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the connection",
                    )
                    .into())
                }
                None => {
                    if self.fill()? == 0 {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Reads what is available into `inbuf`; returns the bytes added.
    fn fill(&mut self) -> ChannelResult<usize> {
        if self.in_at > 0 && self.in_at * 2 > self.inbuf.len() {
            self.inbuf.drain(..self.in_at);
            self.in_at = 0;
        }
        // Never hold more than one frame's worth beyond what the caller takes.
        if self.inbuf.len() - self.in_at > MAX_FRAME + READ_CHUNK {
            return Ok(0);
        }
        let before = self.inbuf.len();
        match self.tls.as_mut() {
            Some(tls) => loop {
                match tls.read_tls(&mut self.sock) {
                    Ok(0) => {
                        self.closed = true;
                        break;
                    }
                    Ok(_) => {
                        let state = tls
                            .process_new_packets()
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                        let n = state.plaintext_bytes_to_read();
                        if n > 0 {
                            let at = self.inbuf.len();
                            self.inbuf.resize(at + n, 0);
                            tls.reader().read_exact(&mut self.inbuf[at..])?;
                        }
                        if state.peer_has_closed() {
                            self.closed = true;
                            break;
                        }
                        if self.inbuf.len() - before >= READ_CHUNK {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            },
            None => {
                let at = self.inbuf.len();
                self.inbuf.resize(at + READ_CHUNK, 0);
                let got = loop {
                    match self.sock.0.read(&mut self.inbuf[at..]) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                        Err(e) => {
                            self.inbuf.truncate(at);
                            return Err(e.into());
                        }
                    }
                };
                self.inbuf.truncate(at + got);
                if got == 0 && self.sock_closed()? {
                    self.closed = true;
                }
            }
        }
        // The TLS handshake and alerts write too.
        if self.tls.as_ref().is_some_and(|t| t.wants_write()) {
            self.flush()?;
        }
        Ok(self.inbuf.len() - before)
    }

    /// After a read of 0 bytes: EOF, or only "nothing now" (the read returned WouldBlock)?
    fn sock_closed(&self) -> io::Result<bool> {
        let mut b = [0u8; 1];
        match self.sock.0.peek(&mut b) {
            Ok(0) => Ok(true),
            Ok(_) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until the socket is readable (or writable, when `want_write`), at most `timeout`.
    pub(crate) fn wait(&self, timeout: Duration, want_write: bool) -> io::Result<()> {
        let mut events = libc::POLLIN;
        if want_write {
            events |= libc::POLLOUT;
        }
        let mut fd = libc::pollfd {
            fd: self.sock.0.as_raw_fd(),
            events,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fd` is one valid pollfd and `ts` a valid timespec for the duration of the
        // call; a null signal mask leaves the mask as it is.
        let rc = unsafe { libc::ppoll(&mut fd, 1, &ts, std::ptr::null()) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Completes the TLS handshake (a no-op for plain TCP), at most `timeout`.
    pub(crate) fn handshake(&mut self, timeout: Duration) -> ChannelResult<()> {
        let until = std::time::Instant::now() + timeout;
        while self.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
            self.flush()?;
            self.fill()?;
            if self.closed {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the peer closed the connection during the TLS handshake",
                )
                .into());
            }
            if std::time::Instant::now() >= until {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake").into());
            }
            if self.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
                self.wait(Duration::from_millis(10), self.pending() > 0)?;
            }
        }
        Ok(())
    }

    /// Waits for the next frame, at most `timeout` (`Ok(None)` then).
    pub(crate) fn recv_timeout(&mut self, timeout: Duration) -> ChannelResult<Option<Frame>> {
        let until = std::time::Instant::now() + timeout;
        loop {
            self.flush()?;
            if let Some(f) = self.recv()? {
                return Ok(Some(f));
            }
            let now = std::time::Instant::now();
            if now >= until {
                return Ok(None);
            }
            self.wait(
                (until - now).min(Duration::from_millis(50)),
                self.pending() > 0,
            )?;
        }
    }

    /// Sends what is queued, waiting for the socket at most `timeout`.
    pub(crate) fn flush_timeout(&mut self, timeout: Duration) -> ChannelResult<()> {
        let until = std::time::Instant::now() + timeout;
        while !self.flush()? {
            if std::time::Instant::now() >= until {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "send").into());
            }
            self.wait(Duration::from_millis(10), true)?;
        }
        Ok(())
    }

    /// Sends a refusal (best effort) and closes.
    pub(crate) fn refuse(mut self, code: super::wire::RefuseCode, message: &str) {
        self.send(&Frame::Refuse {
            code,
            message: message.to_string(),
        });
        let _ = self.flush_timeout(Duration::from_millis(200));
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
            let _ = self.flush();
        }
    }
}
