//! Password hashes as the databases and files of VerneMQ, mosquitto and
//! mosquitto-go-auth store them, checked in the broker.
//!
//! [`verify`] detects the format from the stored string ([`detect`]) and
//! checks the password against it on tokio's blocking pool, so a bcrypt of
//! cost 12 never stalls a reactor thread. [`verify_sync`] is the same check
//! for callers already off the reactor.
//!
//! | stored string | [`Scheme`] |
//! |---|---|
//! | `$2a$…`, `$2b$…`, `$2y$…` (60 characters) | [`Scheme::Bcrypt`] |
//! | `$6$[rounds=N$]<salt>$<86 characters of crypt base64>` | [`Scheme::Sha512Crypt`] (glibc `crypt(3)`) |
//! | `$6$<base64 salt>$<base64 of SHA-512(password ‖ salt)>` | [`Scheme::MosquittoSha512`] (mosquitto 1.x, VerneMQ `vmq_passwd`) |
//! | `$7$<iterations>$<base64 salt>$<base64 hash>` | [`Scheme::MosquittoPbkdf2`] (mosquitto 2, PBKDF2-HMAC-SHA512) |
//! | `PBKDF2$sha512$<iterations>$<salt>$<base64 key>` (or `sha256`) | [`Scheme::GoAuthPbkdf2`] (mosquitto-go-auth) |
//! | `$argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>` (PHC; also `argon2i`/`argon2d`) | [`Scheme::Argon2`] |
//!
//! **The two `$6$` forms.** Both start `$6$`, and both put a salt and a
//! digest of 64 bytes after it; they differ in how the digest is written.
//! glibc writes it in crypt's own base64 (`./0-9A-Za-z`, no padding): always
//! exactly 86 characters. mosquitto writes standard padded base64: always
//! 88 characters ending in `==`. So the last field decides: 86 crypt-base64
//! characters (or a `rounds=` field) is glibc; anything else must decode as
//! standard base64 to exactly 64 bytes to be mosquitto's, and is malformed
//! otherwise. No string satisfies both rules.
//!
//! A stored string in no known format, or a known format with bad fields, is
//! a [`HashError`] (never a panic): callers log it and deny. Costs taken from
//! a stored string are bounded where an absurd value would exhaust memory
//! (argon2 `m`), not where it would only take long (bcrypt cost, rounds).
//!
//! The `hash_*` functions create each format (random salts); they exist for
//! tests and tools, with the costs given by the caller.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// A password hash format Fogg checks itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// bcrypt, `$2a$` / `$2b$` / `$2y$` (VerneMQ documents `$2a$`).
    Bcrypt,
    /// glibc SHA-512 crypt: `$6$[rounds=N$]salt$hash`.
    Sha512Crypt,
    /// mosquitto 1.x / VerneMQ password files: `$6$` + base64 salt + base64
    /// of SHA-512(password ‖ salt).
    MosquittoSha512,
    /// mosquitto 2 password files: `$7$` PBKDF2-HMAC-SHA512.
    MosquittoPbkdf2,
    /// mosquitto-go-auth: `PBKDF2$<digest>$iterations$salt$key`.
    GoAuthPbkdf2(Pbkdf2Digest),
    /// Argon2 PHC strings (`$argon2id$…`, also `argon2i` / `argon2d`).
    Argon2,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Bcrypt => "bcrypt",
            Scheme::Sha512Crypt => "SHA-512 crypt",
            Scheme::MosquittoSha512 => "mosquitto $6$ SHA-512",
            Scheme::MosquittoPbkdf2 => "mosquitto $7$ PBKDF2-SHA512",
            Scheme::GoAuthPbkdf2(Pbkdf2Digest::Sha512) => "PBKDF2-SHA512 (go-auth)",
            Scheme::GoAuthPbkdf2(Pbkdf2Digest::Sha256) => "PBKDF2-SHA256 (go-auth)",
            Scheme::Argon2 => "argon2",
        })
    }
}

/// The HMAC digest of a go-auth PBKDF2 hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pbkdf2Digest {
    Sha512,
    Sha256,
}

/// How the salt field of a go-auth `PBKDF2$` hash is read (go-auth's
/// `hasher_salt_encoding`): base64-decoded (its default) or used as the
/// bytes of the field itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SaltEncoding {
    #[default]
    Base64,
    Utf8,
}

/// Options of [`verify_with`]; `Default` is what every format's own tools do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    pub goauth_salt_encoding: SaltEncoding,
}

/// Why a stored hash could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The stored string is in no format Fogg knows. `prefix` is its `$id$`
    /// identifier (empty when it has none), so a log line never shows a
    /// hash, nor a password stored in clear.
    #[error("unknown password hash format ({})", describe_prefix(prefix))]
    Unknown { prefix: String },
    /// The format is known but a field is wrong.
    #[error("malformed {scheme} hash: {reason}")]
    Malformed { scheme: Scheme, reason: String },
    /// The stored value is empty: the user has no password.
    #[error("no password hash stored")]
    Empty,
    /// The blocking task running the check failed.
    #[error("password check did not complete: {0}")]
    Task(String),
}

fn malformed(scheme: Scheme, reason: impl Into<String>) -> HashError {
    HashError::Malformed {
        scheme,
        reason: reason.into(),
    }
}

/// Longest argon2 memory cost accepted from a stored hash (1 GiB, in KiB):
/// a corrupt `m=` must not make the broker allocate terabytes.
pub const ARGON2_MAX_MEMORY_KIB: u32 = 1 << 20;

/// The scheme a stored string is in, by the rules in the module docs.
pub fn detect(stored: &str) -> Result<Scheme, HashError> {
    if stored.is_empty() {
        return Err(HashError::Empty);
    }
    if let Some(rest) = stored.strip_prefix("PBKDF2$") {
        return match rest.split('$').next() {
            Some("sha512") => Ok(Scheme::GoAuthPbkdf2(Pbkdf2Digest::Sha512)),
            Some("sha256") => Ok(Scheme::GoAuthPbkdf2(Pbkdf2Digest::Sha256)),
            Some(other) => Err(malformed(
                Scheme::GoAuthPbkdf2(Pbkdf2Digest::Sha512),
                format!("unsupported digest {other:?} (expected sha512 or sha256)"),
            )),
            None => Err(unknown(stored)),
        };
    }
    let mut fields = stored.split('$');
    if fields.next() != Some("") {
        return Err(unknown(stored));
    }
    match fields.next() {
        Some("2a" | "2b" | "2y") => Ok(Scheme::Bcrypt),
        Some("7") => Ok(Scheme::MosquittoPbkdf2),
        Some("argon2id" | "argon2i" | "argon2d") => Ok(Scheme::Argon2),
        Some("6") => {
            let rest: Vec<&str> = fields.collect();
            match rest.as_slice() {
                [rounds, _, _] if rounds.starts_with("rounds=") => Ok(Scheme::Sha512Crypt),
                [_, digest] if is_crypt_sha512_digest(digest) => Ok(Scheme::Sha512Crypt),
                [_, _] => Ok(Scheme::MosquittoSha512),
                _ => Err(malformed(
                    Scheme::Sha512Crypt,
                    "expected $6$[rounds=N$]salt$hash",
                )),
            }
        }
        _ => Err(unknown(stored)),
    }
}

fn unknown(stored: &str) -> HashError {
    // Only a short `$id$` identifier is shown: anything else may be a
    // password stored in clear.
    let prefix = stored
        .strip_prefix('$')
        .and_then(|rest| rest.split_once('$'))
        .map(|(id, _)| id)
        .filter(|id| id.len() <= 12 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(|id| format!("${id}$"))
        .unwrap_or_default();
    HashError::Unknown { prefix }
}

fn describe_prefix(prefix: &str) -> String {
    if prefix.is_empty() {
        "no `$id$` identifier".to_owned()
    } else {
        format!("identifier `{prefix}`")
    }
}

/// Length of a SHA-512 crypt digest in crypt base64 (64 bytes).
const SHA512_CRYPT_DIGEST_LEN: usize = 86;

const CRYPT_ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn is_crypt_sha512_digest(field: &str) -> bool {
    field.len() == SHA512_CRYPT_DIGEST_LEN && field.bytes().all(|b| CRYPT_ALPHABET.contains(&b))
}

/// Whether `password` matches `stored`, checked on tokio's blocking pool
/// (inline when called outside a runtime).
pub async fn verify(password: &[u8], stored: &str) -> Result<bool, HashError> {
    verify_with(password, stored, VerifyOptions::default()).await
}

/// [`verify`] with options.
pub async fn verify_with(
    password: &[u8],
    stored: &str,
    options: VerifyOptions,
) -> Result<bool, HashError> {
    // Refuse what cannot be checked before paying for a thread hop.
    detect(stored)?;
    if tokio::runtime::Handle::try_current().is_err() {
        return verify_sync_with(password, stored, options);
    }
    let password = password.to_vec();
    let stored = stored.to_owned();
    tokio::task::spawn_blocking(move || verify_sync_with(&password, &stored, options))
        .await
        .map_err(|e| HashError::Task(e.to_string()))?
}

/// Whether `password` matches `stored`, on the calling thread (CPU-heavy:
/// not for a reactor thread).
pub fn verify_sync(password: &[u8], stored: &str) -> Result<bool, HashError> {
    verify_sync_with(password, stored, VerifyOptions::default())
}

/// [`verify_sync`] with options.
pub fn verify_sync_with(
    password: &[u8],
    stored: &str,
    options: VerifyOptions,
) -> Result<bool, HashError> {
    match detect(stored)? {
        Scheme::Bcrypt => {
            bcrypt::verify(password, stored).map_err(|e| malformed(Scheme::Bcrypt, e.to_string()))
        }
        Scheme::Sha512Crypt => verify_sha512_crypt(password, stored),
        Scheme::MosquittoSha512 => verify_mosquitto_sha512(password, stored),
        Scheme::MosquittoPbkdf2 => verify_mosquitto_pbkdf2(password, stored),
        Scheme::GoAuthPbkdf2(digest) => {
            verify_goauth_pbkdf2(password, stored, digest, options.goauth_salt_encoding)
        }
        Scheme::Argon2 => verify_argon2(password, stored),
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn verify_sha512_crypt(password: &[u8], stored: &str) -> Result<bool, HashError> {
    let scheme = Scheme::Sha512Crypt;
    let rest = stored
        .strip_prefix("$6$")
        .ok_or_else(|| malformed(scheme, "missing $6$"))?;
    let fields: Vec<&str> = rest.split('$').collect();
    let (rounds, salt, digest) = match fields.as_slice() {
        [rounds, salt, digest] => {
            let n = rounds
                .strip_prefix("rounds=")
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| malformed(scheme, "bad rounds= field"))?;
            (n, *salt, *digest)
        }
        [salt, digest] => (sha_crypt::ROUNDS_DEFAULT as u64, *salt, *digest),
        _ => return Err(malformed(scheme, "expected $6$[rounds=N$]salt$hash")),
    };
    if !is_crypt_sha512_digest(digest) {
        return Err(malformed(
            scheme,
            "the hash is not 86 crypt-base64 characters",
        ));
    }
    // glibc clamps rounds into its range rather than refusing.
    let rounds = rounds.clamp(sha_crypt::ROUNDS_MIN as u64, sha_crypt::ROUNDS_MAX as u64);
    let params =
        sha_crypt::Sha512Params::new(usize::try_from(rounds).unwrap_or(sha_crypt::ROUNDS_MAX))
            .map_err(|e| malformed(scheme, format!("{e:?}")))?;
    let computed = sha_crypt::sha512_crypt_b64(password, salt.as_bytes(), &params)
        .map_err(|e| malformed(scheme, format!("{e:?}")))?;
    Ok(ct_eq(computed.as_bytes(), digest.as_bytes()))
}

fn decode_b64(scheme: Scheme, what: &str, field: &str) -> Result<Vec<u8>, HashError> {
    STANDARD
        .decode(field)
        .or_else(|_| STANDARD_NO_PAD.decode(field))
        .map_err(|e| malformed(scheme, format!("{what} is not base64: {e}")))
}

fn verify_mosquitto_sha512(password: &[u8], stored: &str) -> Result<bool, HashError> {
    let scheme = Scheme::MosquittoSha512;
    let fields: Vec<&str> = stored.split('$').collect();
    let ["", "6", salt, digest] = fields.as_slice() else {
        return Err(malformed(scheme, "expected $6$salt$hash"));
    };
    let salt = decode_b64(scheme, "the salt", salt)?;
    let expected = decode_b64(scheme, "the hash", digest)?;
    if expected.len() != 64 {
        return Err(malformed(
            scheme,
            format!("the hash decodes to {} bytes, not 64", expected.len()),
        ));
    }
    let mut hasher = Sha512::new();
    hasher.update(password);
    hasher.update(&salt);
    Ok(ct_eq(&hasher.finalize(), &expected))
}

fn iterations(scheme: Scheme, field: &str) -> Result<u32, HashError> {
    match field.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(malformed(
            scheme,
            format!("iterations must be a positive number, got {field:?}"),
        )),
    }
}

fn verify_mosquitto_pbkdf2(password: &[u8], stored: &str) -> Result<bool, HashError> {
    let scheme = Scheme::MosquittoPbkdf2;
    let fields: Vec<&str> = stored.split('$').collect();
    let ["", "7", rounds, salt, digest] = fields.as_slice() else {
        return Err(malformed(scheme, "expected $7$iterations$salt$hash"));
    };
    let rounds = iterations(scheme, rounds)?;
    let salt = decode_b64(scheme, "the salt", salt)?;
    let expected = decode_b64(scheme, "the hash", digest)?;
    if expected.len() != 64 {
        return Err(malformed(
            scheme,
            format!("the hash decodes to {} bytes, not 64", expected.len()),
        ));
    }
    let mut computed = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, rounds, &mut computed);
    Ok(ct_eq(&computed, &expected))
}

fn verify_goauth_pbkdf2(
    password: &[u8],
    stored: &str,
    digest: Pbkdf2Digest,
    salt_encoding: SaltEncoding,
) -> Result<bool, HashError> {
    let scheme = Scheme::GoAuthPbkdf2(digest);
    let fields: Vec<&str> = stored.split('$').collect();
    let ["PBKDF2", _, rounds, salt, key] = fields.as_slice() else {
        return Err(malformed(
            scheme,
            "expected PBKDF2$digest$iterations$salt$key",
        ));
    };
    let rounds = iterations(scheme, rounds)?;
    let salt = match salt_encoding {
        SaltEncoding::Base64 => decode_b64(scheme, "the salt", salt)?,
        SaltEncoding::Utf8 => salt.as_bytes().to_vec(),
    };
    let expected = decode_b64(scheme, "the key", key)?;
    // go-auth derives as many bytes as the stored key has; bound it so a
    // corrupt field cannot ask for gigabytes.
    if expected.is_empty() || expected.len() > 1024 {
        return Err(malformed(
            scheme,
            format!("the key is {} bytes (expected 1 to 1024)", expected.len()),
        ));
    }
    let mut computed = vec![0u8; expected.len()];
    match digest {
        Pbkdf2Digest::Sha512 => {
            pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, rounds, &mut computed);
        }
        Pbkdf2Digest::Sha256 => {
            pbkdf2::pbkdf2_hmac::<Sha256>(password, &salt, rounds, &mut computed);
        }
    }
    Ok(ct_eq(&computed, &expected))
}

fn verify_argon2(password: &[u8], stored: &str) -> Result<bool, HashError> {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let scheme = Scheme::Argon2;
    let hash = PasswordHash::new(stored).map_err(|e| malformed(scheme, e.to_string()))?;
    let params = argon2::Params::try_from(&hash).map_err(|e| malformed(scheme, e.to_string()))?;
    if params.m_cost() > ARGON2_MAX_MEMORY_KIB {
        return Err(malformed(
            scheme,
            format!(
                "memory cost m={} KiB is above the {} KiB Fogg accepts",
                params.m_cost(),
                ARGON2_MAX_MEMORY_KIB
            ),
        ));
    }
    match argon2::Argon2::default().verify_password(password, &hash) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(malformed(scheme, e.to_string())),
    }
}

// ---------------------------------------------------------------------------
// Creating hashes (tests and tools).

fn random_bytes<const N: usize>() -> [u8; N] {
    rand::random()
}

/// A bcrypt hash (`$2b$`) of the given cost (4 to 31).
pub fn hash_bcrypt(password: &[u8], cost: u32) -> Result<String, HashError> {
    bcrypt::hash(password, cost).map_err(|e| malformed(Scheme::Bcrypt, e.to_string()))
}

/// A glibc SHA-512 crypt hash; `rounds` None leaves the `rounds=` field out
/// (5000 rounds).
pub fn hash_sha512_crypt(password: &[u8], rounds: Option<u32>) -> Result<String, HashError> {
    let scheme = Scheme::Sha512Crypt;
    let salt: String = random_bytes::<16>()
        .iter()
        .map(|b| char::from(CRYPT_ALPHABET[usize::from(b % 64)]))
        .collect();
    let n = rounds.map_or(sha_crypt::ROUNDS_DEFAULT, |r| r as usize);
    let params =
        sha_crypt::Sha512Params::new(n).map_err(|e| malformed(scheme, format!("{e:?}")))?;
    let digest = sha_crypt::sha512_crypt_b64(password, salt.as_bytes(), &params)
        .map_err(|e| malformed(scheme, format!("{e:?}")))?;
    Ok(match rounds {
        Some(r) => format!("$6$rounds={r}${salt}${digest}"),
        None => format!("$6${salt}${digest}"),
    })
}

/// A mosquitto 1.x / VerneMQ `$6$` hash (12-byte salt, as `mosquitto_passwd` 1.x).
pub fn hash_mosquitto_sha512(password: &[u8]) -> String {
    let salt = random_bytes::<12>();
    let mut hasher = Sha512::new();
    hasher.update(password);
    hasher.update(salt);
    format!(
        "$6${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(hasher.finalize())
    )
}

/// A mosquitto 2 `$7$` hash (mosquitto_passwd uses 101 iterations).
pub fn hash_mosquitto_pbkdf2(password: &[u8], iterations: u32) -> String {
    let salt = random_bytes::<12>();
    let mut key = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, iterations.max(1), &mut key);
    format!(
        "$7${}${}${}",
        iterations.max(1),
        STANDARD.encode(salt),
        STANDARD.encode(key)
    )
}

/// A mosquitto-go-auth `PBKDF2$` hash with a base64 salt (go-auth's
/// defaults: sha512, 100000 iterations, 16-byte salt, 64-byte key; sha256
/// uses a 32-byte key).
pub fn hash_goauth_pbkdf2(password: &[u8], digest: Pbkdf2Digest, iterations: u32) -> String {
    let salt = random_bytes::<16>();
    let iterations = iterations.max(1);
    let (name, key) = match digest {
        Pbkdf2Digest::Sha512 => {
            let mut key = vec![0u8; 64];
            pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, iterations, &mut key);
            ("sha512", key)
        }
        Pbkdf2Digest::Sha256 => {
            let mut key = vec![0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password, &salt, iterations, &mut key);
            ("sha256", key)
        }
    };
    format!(
        "PBKDF2${name}${iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(key)
    )
}

/// An argon2id PHC string with the given memory (KiB), iterations and
/// parallelism (go-auth's defaults: 4096, 3, 2).
pub fn hash_argon2id(
    password: &[u8],
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
) -> Result<String, HashError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let scheme = Scheme::Argon2;
    let params = argon2::Params::new(memory_kib, iterations, parallelism, None)
        .map_err(|e| malformed(scheme, e.to_string()))?;
    let salt = SaltString::encode_b64(&random_bytes::<16>())
        .map_err(|e| malformed(scheme, e.to_string()))?;
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| malformed(scheme, e.to_string()))
}

/// A hash of `scheme` with the cheapest parameters the format allows in
/// practice, for test fixtures (bcrypt cost 4, 1000 rounds, small argon2).
pub fn hash_for_tests(scheme: Scheme, password: &[u8]) -> Result<String, HashError> {
    match scheme {
        Scheme::Bcrypt => hash_bcrypt(password, 4),
        Scheme::Sha512Crypt => hash_sha512_crypt(password, Some(1000)),
        Scheme::MosquittoSha512 => Ok(hash_mosquitto_sha512(password)),
        Scheme::MosquittoPbkdf2 => Ok(hash_mosquitto_pbkdf2(password, 101)),
        Scheme::GoAuthPbkdf2(digest) => Ok(hash_goauth_pbkdf2(password, digest, 1000)),
        Scheme::Argon2 => hash_argon2id(password, 1024, 1, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &[u8] = b"correct horse";

    /// Known vectors made by the formats' own tools (see each comment).
    const VECTORS: &[(&str, Scheme)] = &[
        // mosquitto_passwd 2.x (`mosquitto_passwd -c -b file alice 'correct horse'`).
        (
            "$7$101$jsAWLsNnjm/UMFq5$iKEVA2NRCPaCnqk4x9WiKx8JbvL+APM35PR1IfZ01SoDj2/9j27c43l24PmRdOSL6rDRX1J6z0lYkNYiCbtxpw==",
            Scheme::MosquittoPbkdf2,
        ),
        // Python: "$6$" + b64(salt) + "$" + b64(sha512(pw + salt)), salt = bytes 1..=12.
        (
            "$6$AQIDBAUGBwgJCgsM$k4h6DJTPKKgPqwiLW87w0j5t6eo2nkDOCc72xNQ6goxbMrAMEDvsnYteF9SSd1cyXtc8SuF5I0GVPt7YRi6Wdw==",
            Scheme::MosquittoSha512,
        ),
        // glibc crypt(3) via Python's crypt module.
        (
            "$6$saltsaltsalt$Cy2drr8kDRji6smvDcT28wkqtq0R0VzVL5CkrjPQCITc5d/31j94knt9rGTcVSyjLXfjsiIsBh5ee8qR/3QDx1",
            Scheme::Sha512Crypt,
        ),
        (
            "$6$rounds=1000$abcdefgh$DbXqPck5ABZumVXwcH5eMVHsPZwvQ3jylSxpJmKkZVxcoCiC3N0rPerjHmAqL7r6PK6CIeYnO9.vxpbsevscg/",
            Scheme::Sha512Crypt,
        ),
        // Python bcrypt 5.0.
        (
            "$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e",
            Scheme::Bcrypt,
        ),
        (
            "$2a$05$CCCCCCCCCCCCCCCCCCCCC.WrAwgFxicHZ3kL7zMvXYXHKosDn8ot2",
            Scheme::Bcrypt,
        ),
        // $2y$ is PHP's name for the same algorithm.
        (
            "$2y$05$CCCCCCCCCCCCCCCCCCCCC.WrAwgFxicHZ3kL7zMvXYXHKosDn8ot2",
            Scheme::Bcrypt,
        ),
        // Python hashlib.pbkdf2_hmac, salt b"0123456789abcdef", 1000 iterations.
        (
            "PBKDF2$sha512$1000$MDEyMzQ1Njc4OWFiY2RlZg==$OM0FAoIqCVK1sWtxDiffVlBejtLa+ks4TP71JiecwuSZCG8iLbnlIEPOMoVX+i2B2wkSxjQ8CRGR9OkNGuIPMQ==",
            Scheme::GoAuthPbkdf2(Pbkdf2Digest::Sha512),
        ),
        (
            "PBKDF2$sha256$1000$MDEyMzQ1Njc4OWFiY2RlZg==$cBg8D2DungRB9k76szThf5ehfyBz991ay6PT8Srwk4M=",
            Scheme::GoAuthPbkdf2(Pbkdf2Digest::Sha256),
        ),
        // Python argon2-cffi 25.1, m=4096 t=3 p=2 (go-auth's defaults).
        (
            "$argon2id$v=19$m=4096,t=3,p=2$c2FsdHNhbHRzYWx0c2FsdA$BPLyWyvnAcpmA7B4Brd/0YfLNtAXIiKNyEMWc7UqNQw",
            Scheme::Argon2,
        ),
    ];

    #[test]
    fn known_vectors_verify_and_reject_wrong_passwords() {
        for (stored, scheme) in VECTORS {
            assert_eq!(detect(stored).unwrap(), *scheme, "{stored}");
            assert!(verify_sync(PW, stored).unwrap(), "{scheme}: right password");
            for wrong in [&b"correct horsE"[..], b"", b"correct horse ", b"x"] {
                assert!(
                    !verify_sync(wrong, stored).unwrap(),
                    "{scheme}: wrong password {wrong:?}"
                );
            }
        }
    }

    #[test]
    fn openbsd_bcrypt_vector() {
        // From the OpenBSD / John the Ripper test vectors.
        let stored = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
        assert!(verify_sync(b"U*U", stored).unwrap());
        assert!(!verify_sync(b"U*U*", stored).unwrap());
    }

    #[test]
    fn mosquitto_passwd_vector_with_non_ascii_password() {
        // `mosquitto_passwd -b file bob 'p@ss:w0rd é'`.
        let stored = "$7$101$pb1K3Puzg6T7B1/z$D6fgEk+OM71CH5XERL1uFmwkxDLHqCgbm+ZDVLndm7SuwDLDcC+//gvK+W+ineDIqR05DQuIsVvU3fMHt39Aeg==";
        assert!(verify_sync("p@ss:w0rd é".as_bytes(), stored).unwrap());
        assert!(!verify_sync(b"p@ss:w0rd e", stored).unwrap());
    }

    #[test]
    fn goauth_utf8_salt_encoding() {
        let stored = "PBKDF2$sha512$1000$plainsalt$O5GkVy/Nq8u3R7ftD/fIRWlfUxSaFZLTa8TFoExeJjzu3eCAtMoH0iN9+nvEwK+SBqs0HvVOft4FRfvUDKKTNQ==";
        let utf8 = VerifyOptions {
            goauth_salt_encoding: SaltEncoding::Utf8,
        };
        assert!(verify_sync_with(PW, stored, utf8).unwrap());
        assert!(!verify_sync_with(b"nope", stored, utf8).unwrap());
        let stored = "PBKDF2$sha256$1000$plainsalt$7mxrq6yM+WMfQM+vXXXu+JjPCER9dWYMauNWnwgQSGQ=";
        assert!(verify_sync_with(PW, stored, utf8).unwrap());
    }

    #[test]
    fn created_hashes_verify() {
        let schemes = [
            Scheme::Bcrypt,
            Scheme::Sha512Crypt,
            Scheme::MosquittoSha512,
            Scheme::MosquittoPbkdf2,
            Scheme::GoAuthPbkdf2(Pbkdf2Digest::Sha512),
            Scheme::GoAuthPbkdf2(Pbkdf2Digest::Sha256),
            Scheme::Argon2,
        ];
        for scheme in schemes {
            let stored = hash_for_tests(scheme, PW).unwrap();
            assert_eq!(detect(&stored).unwrap(), scheme, "{stored}");
            assert!(verify_sync(PW, &stored).unwrap(), "{scheme}");
            assert!(!verify_sync(b"other", &stored).unwrap(), "{scheme}");
        }
        let glibc_default = hash_sha512_crypt(PW, None).unwrap();
        assert!(!glibc_default.contains("rounds="));
        assert!(verify_sync(PW, &glibc_default).unwrap());
    }

    #[test]
    fn the_two_dollar_six_forms_are_told_apart_by_the_last_field() {
        // 86 crypt-base64 characters: glibc, whatever the salt looks like.
        let glibc = VECTORS[2].0;
        assert_eq!(glibc.rsplit('$').next().unwrap().len(), 86);
        assert_eq!(detect(glibc).unwrap(), Scheme::Sha512Crypt);
        // 88 characters of padded base64: mosquitto.
        let mosq = VECTORS[1].0;
        assert_eq!(mosq.rsplit('$').next().unwrap().len(), 88);
        assert_eq!(detect(mosq).unwrap(), Scheme::MosquittoSha512);
        // Neither: a malformed mosquitto hash, not a panic.
        assert!(matches!(
            verify_sync(PW, "$6$AQIDBAUGBwgJCgsM$abc"),
            Err(HashError::Malformed {
                scheme: Scheme::MosquittoSha512,
                ..
            })
        ));
    }

    #[test]
    fn malformed_and_unknown_hashes_are_errors_not_panics() {
        let cases = [
            "",
            "plaintext",
            "$1$md5crypt$abcdefghijklmnopqrstuv",
            "$5$sha256crypt$abc",
            "$9$",
            "$",
            "$$$$",
            "$2a$",
            "$2a$04$short",
            "$2b$99$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6e",
            "$2b$04$abcdefghijklmnopqrstuujydOTSfIH/d5oUHpsygqV5X9xJLQc6é",
            "$6$",
            "$6$salt",
            "$6$rounds=abc$salt$hash",
            "$6$rounds=1000$salt$tooshort",
            "$6$a$b$c$d",
            "$6$!!!$!!!",
            "$7$",
            "$7$0$AAAA$AAAA",
            "$7$-1$AAAA$AAAA",
            "$7$101$!!$AAAA",
            "$7$101$AAAA$AAAA",
            "$7$101$AAAA",
            "PBKDF2$",
            "PBKDF2$md5$1000$AAAA$AAAA",
            "PBKDF2$sha512$0$AAAA$AAAA",
            "PBKDF2$sha512$1000$AAAA$",
            "PBKDF2$sha512$1000$AAAA",
            "$argon2id$",
            "$argon2id$v=19$m=4096,t=3,p=2$c2FsdA$!!!",
            "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$BPLyWyvnAcpmA7B4Brd/0YfLNtAXIiKNyEMWc7UqNQw",
            "é$6$x",
            "$é",
        ];
        for stored in cases {
            let result = verify_sync(PW, stored);
            assert!(result.is_err(), "{stored:?} gave {result:?}");
        }
        assert_eq!(verify_sync(PW, ""), Err(HashError::Empty));
        let Err(HashError::Unknown { prefix }) = verify_sync(PW, "$9$secretsecretsecret") else {
            panic!("unknown format");
        };
        assert_eq!(prefix, "$9$", "the log shows the identifier only");
        let e = verify_sync(PW, "hunter2-in-clear").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown password hash format (no `$id$` identifier)"
        );
        let e = verify_sync(PW, "$9$secret").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown password hash format (identifier `$9$`)"
        );
        let e = verify_sync(PW, "$hunter2 is my password$").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_verify_runs_on_the_blocking_pool() {
        let stored = VECTORS[4].0;
        assert!(verify(PW, stored).await.unwrap());
        assert!(!verify(b"no", stored).await.unwrap());
        assert!(verify(PW, "$9$x").await.is_err());
    }

    #[test]
    fn async_verify_works_outside_a_runtime() {
        let stored = VECTORS[0].0;
        // A minimal executor: the future never waits when there is no runtime.
        let answer = futures_lite_block_on(verify(PW, stored));
        assert!(answer.unwrap());
    }

    /// Poll a future that completes without waking (no runtime involved).
    fn futures_lite_block_on<F: std::future::Future>(future: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(value) => value,
            Poll::Pending => panic!("verify waited outside a runtime"),
        }
    }
}
