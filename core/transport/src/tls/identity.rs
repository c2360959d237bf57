//! A client certificate's identity: its subject CN or one SAN entry.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::settings::IdentityField;

/// The identity `field` of a DER certificate; `None` when the certificate
/// has no such field or cannot be parsed (rustls has already verified it, so
/// the latter would be a parser gap, not an attack).
pub fn extract(der: &[u8], field: IdentityField) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    match field {
        IdentityField::Cn => cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        IdentityField::SanDns | IdentityField::SanEmail | IdentityField::SanUri => {
            let san = cert.subject_alternative_name().ok()??;
            san.value
                .general_names
                .iter()
                .find_map(|name| match (field, name) {
                    (IdentityField::SanDns, GeneralName::DNSName(v))
                    | (IdentityField::SanEmail, GeneralName::RFC822Name(v))
                    | (IdentityField::SanUri, GeneralName::URI(v)) => Some((*v).to_owned()),
                    _ => None,
                })
        }
    }
}

/// Why a certificate would be refused by clients for its dates, if it would.
pub fn date_problem(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let validity = cert.validity();
    if validity.is_valid() {
        return None;
    }
    Some(format!(
        "valid only from {} to {}",
        validity.not_before, validity.not_after
    ))
}
