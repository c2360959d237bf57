//! Reading certificate and key files into a rustls `ServerConfig`.
//!
//! Every error names the setting and the file it is about and says what is
//! wrong in terms of the file's content, so `fogg --check` output can be
//! acted on without reading code.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::TransportError;
use crate::settings::{TlsSettings, TlsVersion};

/// Build the server configuration the files describe.
pub fn server_config(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<ServerConfig, TransportError> {
    let chain = certificates("certfile", &settings.certfile)?;
    let key = private_key(&settings.keyfile)?;
    if let Some(problem) = chain.first().and_then(|c| super::identity::date_problem(c)) {
        // Not an error: an operator may be about to replace it, and clients
        // will say so themselves. But it must not go unnoticed.
        tracing::warn!(certfile = %settings.certfile.display(), "server certificate is outside its validity period ({problem}); clients will refuse it");
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS12, &rustls::version::TLS13],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TransportError::Setting {
            key: "tls_min_version",
            reason: e.to_string(),
        })?;
    let builder = match &settings.cafile {
        Some(cafile) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("cafile", cafile)? {
                roots.add(cert).map_err(|e| {
                    TransportError::file("cafile", cafile, format!("unusable CA certificate: {e}"))
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if settings.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| TransportError::file("cafile", cafile, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None if settings.require_client_cert => {
            return Err(TransportError::Setting {
                key: "cafile",
                reason: "require_client_cert = true needs cafile, the CA certificates client certificates are verified against".to_owned(),
            });
        }
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TransportError::file(
            "keyfile",
            &settings.keyfile,
            format!(
                "the private key does not match the certificate in {}",
                settings.certfile.display()
            ),
        ),
        other => TransportError::file("keyfile", &settings.keyfile, other),
    })
}

/// Every certificate of a PEM file, in order.
pub fn certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let text = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::file(key, path, pem_error(e)))?;
    if certs.is_empty() {
        return Err(TransportError::file(
            key,
            path,
            "no certificate found (expected PEM \"-----BEGIN CERTIFICATE-----\" sections)",
        ));
    }
    Ok(certs)
}

/// The first private key of a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TransportError> {
    let text = read("keyfile", path)?;
    match PrivateKeyDer::from_pem_slice(&text) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            let reason = if contains(&text, b"ENCRYPTED") {
                "the private key is encrypted; give an unencrypted key (e.g. `openssl pkey -in KEY -out PLAIN`)"
            } else {
                "no private key found (expected PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")"
            };
            Err(TransportError::file("keyfile", path, reason))
        }
        Err(e) => Err(TransportError::file("keyfile", path, pem_error(e))),
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TransportError> {
    fs::read(path).map_err(|e| TransportError::file(key, path, format!("cannot read: {e}")))
}

fn pem_error(e: pem::Error) -> String {
    format!("not valid PEM: {e}")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
