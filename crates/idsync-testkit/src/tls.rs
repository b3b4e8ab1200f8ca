//! Throwaway TLS material for test servers: a CA and a server certificate for `127.0.0.1`, `::1` and
//! `localhost`, plus a second, unrelated CA to provoke verification failures.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::TestkitError;

/// PEM files written for a TLS-enabled server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the server certificate (what clients must trust).
    pub ca_cert: PathBuf,
    /// The server certificate (signed by `ca_cert`).
    pub server_cert: PathBuf,
    /// The server's private key (PKCS#8 PEM).
    pub server_key: PathBuf,
    /// A CA that signed nothing here: trusting only it must make verification fail.
    pub other_ca_cert: PathBuf,
}

fn cert_error(e: rcgen::Error) -> TestkitError {
    TestkitError::Certificate(e.to_string())
}

fn new_ca(name: &str) -> Result<(String, Issuer<'static, KeyPair>), TestkitError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "idsync tests");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let key = KeyPair::generate().map_err(cert_error)?;
    let cert = params.self_signed(&key).map_err(cert_error)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

/// Generates a CA, a server certificate for loopback names and an unrelated CA into `dir`.
pub fn generate(dir: &Path) -> Result<TlsFiles, TestkitError> {
    let (ca_pem, issuer) = new_ca("idsync test CA")?;
    let (other_pem, _) = new_ca("idsync unrelated CA")?;

    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let mut params = CertificateParams::new(names).map_err(cert_error)?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(cert_error)?;
    let cert = params.signed_by(&key, &issuer).map_err(cert_error)?;

    let files = TlsFiles {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        other_ca_cert: dir.join("other-ca.pem"),
    };
    let write = |path: &Path, text: &str| {
        fs::write(path, text).map_err(|source| TestkitError::Io {
            context: format!("writing {}", path.display()),
            source,
        })
    };
    write(&files.ca_cert, &ca_pem)?;
    write(&files.server_cert, &cert.pem())?;
    write(&files.server_key, &key.serialize_pem())?;
    write(&files.other_ca_cert, &other_pem)?;
    Ok(files)
}
