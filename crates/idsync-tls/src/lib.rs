//! TLS client pieces shared by the connectors that speak TLS (`idsync-ldap`, `idsync-grafana`), so both
//! read certificate files and skip verification (only when a config asks for it) the same way. Each
//! connector still builds its own `rustls::ClientConfig`: their options differ (Grafana's ALPN and the
//! platform verifier; LDAP's `min_tls_version`, client certificates and native roots).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The certificates of a PEM file; an error (naming the file) when it cannot be read, is not PEM, or holds
/// no certificate.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM in {shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{shown} contains no PEM certificate"));
    }
    Ok(certs)
}

/// Accepts any server certificate chain and name, but still checks that the handshake is signed by the
/// presented certificate's key. Only for a config that turns verification off (`ssl_skip_verify`,
/// `insecure_skip_verify`); callers say so in their logs.
#[derive(Debug)]
pub struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl AcceptAnyCertificate {
    /// Handshake signatures are checked with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        AcceptAnyCertificate(provider)
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files_that_hold_no_certificate_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.pem");
        let err = read_pem_certs(&missing).expect_err("missing file");
        assert!(
            err.starts_with("cannot read ") && err.contains("missing.pem"),
            "{err}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = read_pem_certs(&empty).expect_err("no certificate");
        assert!(err.ends_with("contains no PEM certificate"), "{err}");
    }

    #[test]
    fn skipping_verification_still_offers_the_providers_signature_schemes() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = AcceptAnyCertificate::new(provider.clone());
        assert_eq!(
            verifier.supported_verify_schemes(),
            provider.signature_verification_algorithms.supported_schemes()
        );
        assert!(!verifier.supported_verify_schemes().is_empty());
    }
}
