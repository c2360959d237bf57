//! A throw-away PKI for tests: CAs, server and client certificates (valid,
//! expired, from another CA) written as PEM files, and rustls client
//! settings that trust a CA. Feature `test-pki`; never for production.

#![allow(clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
    date_time_ymd,
};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate authority.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate with its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Paths of files written by [`Issued::write`] / [`Ca::write`].
#[derive(Debug, Clone)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(common_name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca { cert, key }
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// Write the CA certificate as `DIR/NAME`; returns the path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, self.cert_pem()).expect("write CA certificate");
        path
    }

    /// A server certificate for `localhost` and 127.0.0.1, valid now.
    pub fn server(&self) -> Issued {
        self.issue("localhost", true, Validity::Now)
    }

    /// A server certificate whose validity ended long ago.
    pub fn expired_server(&self) -> Issued {
        self.issue("localhost", true, Validity::Expired)
    }

    /// A client certificate with this subject CN.
    pub fn client(&self, common_name: &str) -> Issued {
        self.issue(common_name, false, Validity::Now)
    }

    /// A client certificate with this CN and extra SAN entries
    /// (`dns:`, `email:`, `uri:` prefixes).
    pub fn client_with_sans(&self, common_name: &str, sans: &[&str]) -> Issued {
        let mut params = self.params(common_name, false, Validity::Now);
        for san in sans {
            let entry = if let Some(v) = san.strip_prefix("dns:") {
                SanType::DnsName(v.try_into().expect("dns name"))
            } else if let Some(v) = san.strip_prefix("email:") {
                SanType::Rfc822Name(v.try_into().expect("email"))
            } else if let Some(v) = san.strip_prefix("uri:") {
                SanType::URI(v.try_into().expect("uri"))
            } else {
                panic!("unknown SAN {san}")
            };
            params.subject_alt_names.push(entry);
        }
        self.sign(params)
    }

    /// An expired client certificate.
    pub fn expired_client(&self, common_name: &str) -> Issued {
        self.issue(common_name, false, Validity::Expired)
    }

    fn issue(&self, common_name: &str, server: bool, validity: Validity) -> Issued {
        self.sign(self.params(common_name, server, validity))
    }

    fn params(&self, common_name: &str, server: bool, validity: Validity) -> CertificateParams {
        let sans: Vec<String> = if server {
            vec!["localhost".into(), "127.0.0.1".into()]
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(sans).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        if validity == Validity::Expired {
            params.not_before = date_time_ymd(2001, 1, 1);
            params.not_after = date_time_ymd(2002, 1, 1);
        }
        params
    }

    fn sign(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign certificate");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Validity {
    Now,
    Expired,
}

impl Issued {
    /// Write `DIR/NAME.crt` and `DIR/NAME.key`.
    pub fn write(&self, dir: &Path, name: &str) -> Files {
        let files = Files {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        fs::write(&files.cert, &self.cert_pem).expect("write certificate");
        fs::write(&files.key, &self.key_pem).expect("write key");
        files
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("certificate PEM")
    }

    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key PEM")
    }
}

/// rustls client settings trusting `ca`, presenting `client` if given.
pub fn client_config(ca: &Ca, client: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    client_config_for(ca, client, rustls::DEFAULT_VERSIONS)
}

/// The same, speaking only TLS 1.2.
pub fn client_config_tls12(ca: &Ca) -> Arc<rustls::ClientConfig> {
    client_config_for(ca, None, &[&rustls::version::TLS12])
}

fn client_config_for(
    ca: &Ca,
    client: Option<&Issued>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.der().clone()).expect("CA into roots");
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match client {
        Some(c) => builder
            .with_client_auth_cert(vec![c.cert_der()], c.key_der())
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}
