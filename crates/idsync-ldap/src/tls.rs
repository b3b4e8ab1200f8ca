//! The rustls client configuration of one `[[servers]]` entry: trusted CAs (`root_ca_cert`, or the
//! system's), `min_tls_version`, an optional client certificate, and `ssl_skip_verify`. Verification is on
//! unless `ssl_skip_verify = true`. Always the ring provider, never the process default.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use idsync_tls::{AcceptAnyCertificate, read_pem_certs};
use rustls::pki_types::PrivateKeyDer;
use rustls::{ClientConfig, RootCertStore};

use crate::error::LdapError;
use crate::settings::ServerSettings;

/// Builds the TLS client configuration for `server` (`index` is its position, for messages).
pub(crate) fn client_config(server: &ServerSettings, index: usize) -> Result<Arc<ClientConfig>, LdapError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match server.min_tls_version.trim() {
        "TLS1.3" => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS12, &rustls::version::TLS13],
    };
    if !server.tls_ciphers.is_empty() {
        tracing::warn!(
            server = index,
            "ldap.toml: tls_ciphers is ignored (rustls offers only modern suites)"
        );
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| LdapError::config(format!("TLS setup: {e}")).at_server(index))?;
    let builder = if server.ssl_skip_verify {
        tracing::warn!(
            server = index,
            host = %server.host,
            "ssl_skip_verify = true: the LDAP server's certificate is NOT verified"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new(provider)))
    } else {
        builder.with_root_certificates(root_store(server, index)?)
    };
    let config = if server.client_cert.trim().is_empty() {
        builder.with_no_client_auth()
    } else {
        let certs = read_pem_certs(Path::new(server.client_cert.trim()))
            .map_err(|e| LdapError::config(format!("client_cert: {e}")).at_server(index))?;
        let key = read_key(Path::new(server.client_key.trim()))
            .map_err(|e| LdapError::config(format!("client_key: {e}")).at_server(index))?;
        builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| LdapError::config(format!("client_cert/client_key: {e}")).at_server(index))?
    };
    Ok(Arc::new(config))
}

fn root_store(server: &ServerSettings, index: usize) -> Result<RootCertStore, LdapError> {
    let mut roots = RootCertStore::empty();
    let paths = server.root_ca_certs();
    if paths.is_empty() {
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(server = index, %error, "loading the system's CA certificates");
        }
        let (added, _ignored) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            tracing::warn!(
                server = index,
                "no system CA certificates found; set root_ca_cert"
            );
        }
        return Ok(roots);
    }
    for path in paths {
        let certs = read_pem_certs(&path)
            .map_err(|e| LdapError::config(format!("root_ca_cert: {e}")).at_server(index))?;
        for cert in certs {
            roots.add(cert).map_err(|e| {
                LdapError::config(format!("root_ca_cert: {}: {e}", path.display())).at_server(index)
            })?;
        }
    }
    Ok(roots)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no PEM private key found", path.display()))
}
