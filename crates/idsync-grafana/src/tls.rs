//! The rustls client configuration: ring as the crypto provider, the platform's trust store by default, a
//! configured CA bundle instead of it, or (tests only) no verification at all.

use std::path::Path;
use std::sync::Arc;

use idsync_tls::AcceptAnyCertificate;

use crate::error::GrafanaError;

/// Installs ring as the process-wide rustls provider (an already installed provider is left alone) and builds
/// the client configuration, with ring explicitly, whatever the process default is.
pub(crate) fn client_config(
    ca_cert: Option<&Path>,
    insecure_skip_verify: bool,
) -> Result<rustls::ClientConfig, GrafanaError> {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| GrafanaError::config(format!("TLS setup failed: {e}")))?;
    let mut config = if insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new(provider)))
            .with_no_client_auth()
    } else if let Some(path) = ca_cert {
        builder
            .with_root_certificates(load_roots(path)?)
            .with_no_client_auth()
    } else {
        let verifier = rustls_platform_verifier::Verifier::new(provider)
            .map_err(|e| GrafanaError::config(format!("cannot load the system trust store: {e}")))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn load_roots(path: &Path) -> Result<rustls::RootCertStore, GrafanaError> {
    let certs =
        idsync_tls::read_pem_certs(path).map_err(|e| GrafanaError::config(format!("ca_cert: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| {
            GrafanaError::config(format!("invalid certificate in ca_cert {}: {e}", path.display()))
        })?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_insecure_and_bad_ca_configs() {
        assert!(client_config(None, false).is_ok());
        assert!(client_config(None, true).is_ok());
        let err = client_config(Some(Path::new("/nonexistent/ca.pem")), false).unwrap_err();
        assert!(
            err.to_string()
                .contains("ca_cert: cannot read /nonexistent/ca.pem"),
            "{err}"
        );

        let dir = std::env::temp_dir().join(format!("idsync-grafana-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(Some(&empty), false).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
