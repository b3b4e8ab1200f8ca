//! TLS: verification is on by default (a server whose CA is not trusted is refused), a configured CA bundle
//! is trusted instead of the system roots, and `insecure_skip_verify` turns verification off.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use idsync_grafana::{BasicAuth, ErrorKind, GrafanaClient, GrafanaConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A tiny HTTPS server answering every request with `200 []`; stops when the returned handle is dropped.
struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn https_server() -> Server {
    https_server_on("127.0.0.1").await
}

async fn https_server_on(ip: &str) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs: Vec<_> = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(data("server.pem")).expect("server.pem"),
    ))
    .collect::<Result<_, _>>()
    .expect("certs");
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(data("server.key")).expect("server.key"),
    ))
    .expect("key")
    .expect("a key");
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server { addr, task }
}

fn config(url: String) -> GrafanaConfig {
    let mut cfg = GrafanaConfig::new(url::Url::parse(&url).expect("url"));
    cfg.basic = Some(BasicAuth {
        user: "admin".into(),
        password: "admin".into(),
    });
    cfg.max_retries = 1;
    cfg.retry_base_delay = Duration::from_millis(5);
    cfg.timeout = Duration::from_secs(5);
    cfg
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_by_default() {
    let server = https_server().await;
    let client = GrafanaClient::new(config(format!("https://localhost:{}/", server.addr.port()))).unwrap();
    let err = client.health().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    assert!(
        err.to_string().contains("after 1 attempt(s)"),
        "not retried: {err}"
    );
}

#[tokio::test]
async fn a_configured_ca_is_trusted() {
    let server = https_server().await;
    for host in ["localhost", "127.0.0.1"] {
        let mut cfg = config(format!("https://{host}:{}/", server.addr.port()));
        cfg.ca_cert = Some(data("ca.pem"));
        GrafanaClient::new(cfg).unwrap().health().await.unwrap();
    }
}

#[tokio::test]
async fn the_server_name_is_checked() {
    // The certificate is for localhost and 127.0.0.1 only.
    let server = https_server_on("127.0.0.2").await;
    let mut cfg = config(format!("https://127.0.0.2:{}/", server.addr.port()));
    cfg.ca_cert = Some(data("ca.pem"));
    let err = GrafanaClient::new(cfg).unwrap().health().await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_certificate() {
    let server = https_server().await;
    let mut cfg = config(format!("https://localhost:{}/", server.addr.port()));
    cfg.insecure_skip_verify = true;
    GrafanaClient::new(cfg).unwrap().health().await.unwrap();
}
