//! A throw-away certificate authority and a server certificate for loopback.
//!
//! Why: Codex CLI only talks HTTPS to its ChatGPT backend, and Claude Code
//! only to Anthropic's own host names. A CA made fresh for each test (and
//! trusted through `CODEX_CA_CERTIFICATE`, `NODE_EXTRA_CA_CERTS` or an HTTP
//! client's own setting) keeps the test offline and leaves the machine's trust
//! store alone.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The real hosts this backend (and the fake authorization server behind it)
/// stand in for, for clients whose URLs are fixed: the certificate names them
/// too, and a test maps them to loopback inside a private network namespace
/// (see `crate::netns`).
pub const STANDS_IN_FOR: [&str; 2] = ["chatgpt.com", "auth.openai.com"];

/// A CA whose PEM was written to a file, and a rustls server configuration
/// with a certificate it signed for `127.0.0.1`, `localhost` and
/// [`STANDS_IN_FOR`].
pub(crate) struct Tls {
    pub server_config: Arc<rustls::ServerConfig>,
}

impl Tls {
    /// Generates the CA and the server certificate (for [`STANDS_IN_FOR`]);
    /// writes the CA's PEM to `ca_pem_path`.
    pub(crate) fn generate(ca_pem_path: &Path) -> anyhow::Result<Tls> {
        Self::generate_for(ca_pem_path, &STANDS_IN_FOR)
    }

    /// Like [`generate`](Self::generate), with `host_names` in the server
    /// certificate besides `localhost` and `127.0.0.1` (for a client whose
    /// host names a hosts file points at loopback).
    pub(crate) fn generate_for(ca_pem_path: &Path, host_names: &[&str]) -> anyhow::Result<Tls> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "oauth-broker test CA");
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?;

        let names = std::iter::once("localhost")
            .chain(host_names.iter().copied())
            .map(str::to_string)
            .collect::<Vec<_>>();
        let mut leaf_params = CertificateParams::new(names)?;
        leaf_params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        let leaf_key = KeyPair::generate()?;
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key)?;

        std::fs::write(ca_pem_path, ca.pem())
            .with_context(|| format!("writing {}", ca_pem_path.display()))?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            server_config: Arc::new(config),
        })
    }
}
