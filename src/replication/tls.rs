//! Mutual TLS for replication (rustls, ring provider): both sides present a certificate
//! signed by the log's own CA and check the other's against it. Plain TCP is only for
//! loopback addresses ([`Security::Insecure`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::error::{Error, Result};

/// How replication connections are protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Mutual TLS (the default for any address).
    Tls(TlsFiles),
    /// Plain TCP, refused unless every address is a loopback address (`--insecure`).
    Insecure,
}

/// PEM files of one side of a mutual TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This side's certificate chain.
    pub cert: PathBuf,
    /// This side's private key.
    pub key: PathBuf,
    /// The CA the other side's certificate must be signed by.
    pub ca: PathBuf,
    /// The name the leader's certificate must carry, for a follower (default: the host of
    /// the leader's address, an IP address then).
    pub server_name: Option<String>,
}

impl Security {
    /// Refuses plain TCP on an address that is not loopback.
    pub(crate) fn check(&self, addr: &SocketAddr) -> Result<()> {
        if *self == Security::Insecure && !addr.ip().is_loopback() {
            return Err(Error::Config(format!(
                "replication without TLS is only allowed on loopback addresses, not {addr}"
            )));
        }
        Ok(())
    }
}

fn tls_error(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("TLS {what} {}: {e}", path.display()))
}

fn load(
    files: &TlsFiles,
) -> Result<(
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    rustls::RootCertStore,
)> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| tls_error(&files.cert, "certificate", e))?;
    if certs.is_empty() {
        return Err(tls_error(
            &files.cert,
            "certificate",
            "no certificate in the file",
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| tls_error(&files.key, "key", e))?;
    let mut roots = rustls::RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(&files.ca)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| tls_error(&files.ca, "CA", e))?;
    for ca in cas {
        roots.add(ca).map_err(|e| tls_error(&files.ca, "CA", e))?;
    }
    if roots.is_empty() {
        return Err(tls_error(&files.ca, "CA", "no certificate in the file"));
    }
    Ok((certs, key, roots))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The leader's side: requires a client certificate signed by the CA.
pub(crate) fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>> {
    let (certs, key, roots) = load(files)?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| tls_error(&files.ca, "client verifier", e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&files.cert, "protocol", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls_error(&files.cert, "certificate", e))?;
    Ok(Arc::new(config))
}

/// The follower's side: presents its certificate, checks the leader's.
pub(crate) fn client_config(files: &TlsFiles) -> Result<Arc<rustls::ClientConfig>> {
    let (certs, key, roots) = load(files)?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&files.cert, "protocol", e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| tls_error(&files.cert, "certificate", e))?;
    Ok(Arc::new(config))
}

/// The name a follower expects in the certificate of the leader at `addr`.
pub(crate) fn server_name(files: &TlsFiles, addr: &SocketAddr) -> Result<ServerName<'static>> {
    match &files.server_name {
        Some(n) => ServerName::try_from(n.clone())
            .map_err(|e| Error::Config(format!("TLS server name {n:?}: {e}"))),
        None => Ok(ServerName::IpAddress(addr.ip().into())),
    }
}

/// Writes a private CA and a certificate and key for each of `names` into `out`
/// (`ca.pem`, `ca.key`, `<name>.pem`, `<name>.key`), valid for `hosts` (names or IP
/// addresses; loopback and `localhost` always). For trials and tests; production uses the
/// site's own CA.
pub fn generate_certs(out: &Path, names: &[&str], hosts: &[String]) -> Result<()> {
    let err = |e: rcgen::Error| Error::Config(format!("certificate generation: {e}"));
    std::fs::create_dir_all(out).map_err(|e| Error::io("create", out, e))?;
    let write = |name: &str, text: String| -> Result<()> {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io("write", &p, e))
    };
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "wal-recorder replication CA");
    let ca = ca_params.self_signed(&ca_key).map_err(err)?;
    write("ca.pem", ca.pem())?;
    write("ca.key", ca_key.serialize_pem())?;
    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    sans.extend(hosts.iter().cloned());
    for name in names {
        let key = rcgen::KeyPair::generate().map_err(err)?;
        let mut params = rcgen::CertificateParams::new(sans.clone()).map_err(err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name.to_string());
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(err)?;
        write(&format!("{name}.pem"), cert.pem())?;
        write(&format!("{name}.key"), key.serialize_pem())?;
    }
    Ok(())
}
