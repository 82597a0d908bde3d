//! Client certificates for the RFC 7523 client assertion: an X.509
//! certificate chain and its RSA private key, from PEM (RFC 7468) or a
//! PKCS#12 / PFX file with a password.
//!
//! Keys may be PKCS#8 (`PRIVATE KEY`), encrypted PKCS#8
//! (`ENCRYPTED PRIVATE KEY`, with the password) or PKCS#1
//! (`RSA PRIVATE KEY`). Entra ID takes RSA keys only. The leaf certificate
//! is the one whose public key is the private key's; the others follow it in
//! the order given, and are sent as `x5c` when asked for.
//!
//! `Debug` shows the thumbprint and the chain length, never the key.

use std::fmt;

use base64::Engine as _;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::der::{oid, tag, Der, DerError};
use super::pkcs12;

/// Why a certificate or key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The PEM text does not parse.
    #[error("the certificate file is not valid PEM: {0}")]
    Pem(String),
    /// No certificate was found.
    #[error("the certificate file holds no certificate")]
    NoCertificate,
    /// No private key was found.
    #[error("the certificate file holds no private key (a PEM file needs the certificate and its key, PKCS#8 or PKCS#1)")]
    NoPrivateKey,
    /// The key is encrypted and no password was given.
    #[error("the private key is encrypted and no password was given")]
    PasswordRequired,
    /// The password does not open the file (integrity check or decryption
    /// failed).
    #[error("the password is wrong for the certificate file (or the file is damaged)")]
    WrongPassword,
    /// The key is not an RSA key.
    #[error(
        "the private key is not an RSA key ({0}); Microsoft Entra ID takes RSA certificates only"
    )]
    NotRsa(&'static str),
    /// No certificate in the file has the private key's public key.
    #[error("no certificate in the file matches the private key")]
    KeyMismatch,
    /// More than one private key.
    #[error("the certificate file holds {0} private keys; give one")]
    SeveralKeys(usize),
    /// An algorithm or structure this reader does not implement.
    #[error("unsupported in the certificate file: {0}")]
    Unsupported(String),
    /// Bytes that are not the DER expected.
    #[error("the certificate file is malformed: expected {0}")]
    Malformed(&'static str),
}

/// The private key in PKCS#1 `RSAPrivateKey` DER (what
/// `ring::signature::RsaKeyPair::from_der` takes). `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPrivateKeyDer(Vec<u8>);

impl RsaPrivateKeyDer {
    /// The DER bytes. A secret: never log them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for RsaPrivateKeyDer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RsaPrivateKeyDer(<redacted>)")
    }
}

/// An RSA public key: modulus and exponent, big-endian without leading
/// zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    /// The modulus `n`.
    pub modulus: Vec<u8>,
    /// The public exponent `e`.
    pub exponent: Vec<u8>,
}

impl RsaPublicKey {
    /// The key size in bits.
    pub fn bits(&self) -> usize {
        self.modulus.first().map_or(0, |&b| {
            (self.modulus.len() - 1) * 8 + (8 - b.leading_zeros() as usize)
        })
    }
}

/// A certificate chain (leaf first) and the leaf's RSA private key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    chain: Vec<Vec<u8>>,
    key: RsaPrivateKeyDer,
    public_key: RsaPublicKey,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t", &self.x5t())
            .field("chain_len", &self.chain.len())
            .field("key_bits", &self.public_key.bits())
            .field("key", &self.key)
            .finish()
    }
}

impl ClientCertificate {
    /// From a certificate file's bytes: PEM when it reads as PEM text,
    /// otherwise PKCS#12 / PFX. `password` opens an encrypted key or a PFX
    /// (`None` is the empty password for a PFX).
    pub fn from_bytes(bytes: &[u8], password: Option<&str>) -> Result<Self, CertificateError> {
        let text_start = bytes.iter().position(|b| !b.is_ascii_whitespace());
        let looks_pem = text_start.is_some_and(|i| bytes[i..].starts_with(b"-----BEGIN"))
            || bytes.windows(11).any(|w| w == b"-----BEGIN ");
        if looks_pem {
            Self::from_pem(bytes, password)
        } else {
            Self::from_pkcs12(bytes, password.unwrap_or(""))
        }
    }

    /// From PEM text holding the certificate (and optionally its chain) and
    /// the private key, in any order.
    pub fn from_pem(pem_text: &[u8], password: Option<&str>) -> Result<Self, CertificateError> {
        let blocks = pem::parse_many(pem_text).map_err(|e| CertificateError::Pem(e.to_string()))?;
        let mut certificates = Vec::new();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for block in blocks {
            match block.tag() {
                "CERTIFICATE" => certificates.push(block.into_contents()),
                "PRIVATE KEY" => keys.push(rsa_from_pkcs8(block.contents())?),
                "RSA PRIVATE KEY" => {
                    if block.headers().get("Proc-Type").is_some() {
                        return Err(CertificateError::Unsupported(
                            "a legacy OpenSSL-encrypted RSA PRIVATE KEY; convert it to PKCS#8 with `openssl pkcs8 -topk8`".into(),
                        ));
                    }
                    keys.push(block.into_contents());
                }
                "ENCRYPTED PRIVATE KEY" => {
                    let password = password.ok_or(CertificateError::PasswordRequired)?;
                    let info = pkcs12::decrypt_private_key_info(
                        block.contents(),
                        password,
                        &pkcs12::bmp_password(password),
                    )?;
                    keys.push(rsa_from_pkcs8(&info)?);
                }
                "EC PRIVATE KEY" => return Err(CertificateError::NotRsa("an EC key")),
                _ => {}
            }
        }
        Self::assemble(certificates, keys)
    }

    /// From a PKCS#12 / PFX file and its password (empty for none).
    pub fn from_pkcs12(pfx: &[u8], password: &str) -> Result<Self, CertificateError> {
        let contents = pkcs12::parse(pfx, password)?;
        let keys = contents
            .keys
            .iter()
            .map(|k| rsa_from_pkcs8(k))
            .collect::<Result<Vec<_>, _>>()?;
        Self::assemble(contents.certificates, keys)
    }

    /// From DER: certificates (any order) and a PKCS#8 or PKCS#1 RSA key.
    pub fn from_der(certificates: Vec<Vec<u8>>, key: &[u8]) -> Result<Self, CertificateError> {
        let key = match rsa_public_of_private(key) {
            Ok(_) => key.to_vec(),
            Err(_) => rsa_from_pkcs8(key)?,
        };
        Self::assemble(certificates, vec![key])
    }

    fn assemble(
        mut certificates: Vec<Vec<u8>>,
        mut keys: Vec<Vec<u8>>,
    ) -> Result<Self, CertificateError> {
        if certificates.is_empty() {
            return Err(CertificateError::NoCertificate);
        }
        let key = match keys.len() {
            0 => return Err(CertificateError::NoPrivateKey),
            1 => keys.remove(0),
            n => return Err(CertificateError::SeveralKeys(n)),
        };
        let public_key = rsa_public_of_private(&key)?;
        let mut leaf = None;
        for (i, cert) in certificates.iter().enumerate() {
            if let Ok(Some(pk)) = certificate_rsa_key(cert) {
                if pk == public_key {
                    leaf = Some(i);
                    break;
                }
            }
        }
        let leaf = leaf.ok_or(CertificateError::KeyMismatch)?;
        let first = certificates.remove(leaf);
        certificates.insert(0, first);
        Ok(ClientCertificate {
            chain: certificates,
            key: RsaPrivateKeyDer(key),
            public_key,
        })
    }

    /// The leaf certificate, DER.
    pub fn leaf(&self) -> &[u8] {
        &self.chain[0]
    }

    /// The chain, leaf first, DER.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The private key (PKCS#1 DER).
    pub fn private_key(&self) -> &RsaPrivateKeyDer {
        &self.key
    }

    /// The leaf's public key.
    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public_key
    }

    /// SHA-1 of the leaf's DER: the thumbprint the portal shows (in hex).
    pub fn thumbprint_sha1(&self) -> [u8; 20] {
        Sha1::digest(self.leaf()).into()
    }

    /// SHA-256 of the leaf's DER.
    pub fn thumbprint_sha256(&self) -> [u8; 32] {
        Sha256::digest(self.leaf()).into()
    }

    /// The JWS `x5t` header (RFC 7515 4.1.7): the SHA-1 thumbprint,
    /// base64url without padding.
    pub fn x5t(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.thumbprint_sha1())
    }

    /// The JWS `x5t#S256` header (RFC 7515 4.1.8).
    pub fn x5t_s256(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.thumbprint_sha256())
    }

    /// The JWS `x5c` header (RFC 7515 4.1.6): each certificate in standard,
    /// padded base64, leaf first.
    pub fn x5c(&self) -> Vec<String> {
        self.chain
            .iter()
            .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
            .collect()
    }
}

/// The PKCS#1 key inside a PKCS#8 `PrivateKeyInfo`, if it is RSA.
fn rsa_from_pkcs8(der: &[u8]) -> Result<Vec<u8>, CertificateError> {
    let mut info = Der::new(der).sequence("a PKCS#8 PrivateKeyInfo")?;
    info.small_uint("the PKCS#8 version")?;
    let mut alg = info.sequence("the PKCS#8 key algorithm")?;
    let id = alg.oid("the PKCS#8 key algorithm")?;
    if id != oid::RSA_ENCRYPTION {
        return Err(CertificateError::NotRsa(
            if id.starts_with(&[0x2a, 0x86, 0x48, 0xce, 0x3d]) {
                "an EC key"
            } else {
                "a key of another type"
            },
        ));
    }
    let key = info.octet_string("the PKCS#8 private key")?.to_vec();
    rsa_public_of_private(&key)?;
    Ok(key)
}

/// Modulus and exponent of a PKCS#1 `RSAPrivateKey`.
fn rsa_public_of_private(der: &[u8]) -> Result<RsaPublicKey, CertificateError> {
    let mut k = Der::new(der).sequence("a PKCS#1 RSAPrivateKey")?;
    if k.small_uint("the RSAPrivateKey version")? != 0 {
        return Err(CertificateError::Unsupported(
            "a multi-prime RSA key".into(),
        ));
    }
    let modulus = k.unsigned_integer("the RSA modulus")?.to_vec();
    let exponent = k.unsigned_integer("the RSA public exponent")?.to_vec();
    for what in [
        "the RSA private exponent",
        "the RSA prime p",
        "the RSA prime q",
        "the RSA exponent dP",
        "the RSA exponent dQ",
        "the RSA coefficient",
    ] {
        k.unsigned_integer(what)?;
    }
    Ok(RsaPublicKey { modulus, exponent })
}

/// The RSA public key of an X.509 certificate (RFC 5280 4.1), or `None`
/// when it holds another kind of key.
pub fn certificate_rsa_key(cert: &[u8]) -> Result<Option<RsaPublicKey>, CertificateError> {
    let mut c = Der::new(cert).sequence("an X.509 Certificate")?;
    let mut tbs = c.sequence("an X.509 TBSCertificate")?;
    if tbs.peek_tag() == Some(tag::CONTEXT_0) {
        tbs.skip()?; // version
    }
    for _ in 0..5 {
        tbs.skip()?; // serialNumber, signature, issuer, validity, subject
    }
    let spki = tbs.element()?.2;
    spki_rsa_key(spki)
}

/// The RSA key of a DER `SubjectPublicKeyInfo` (a PEM `PUBLIC KEY`), or
/// `None` for another kind of key.
pub fn spki_rsa_key(spki: &[u8]) -> Result<Option<RsaPublicKey>, CertificateError> {
    let mut spki = Der::new(spki).sequence("a SubjectPublicKeyInfo")?;
    let mut alg = spki.sequence("the public key algorithm")?;
    if alg.oid("the public key algorithm")? != oid::RSA_ENCRYPTION {
        return Ok(None);
    }
    let bits = spki.expect(tag::BIT_STRING, "the public key BIT STRING")?;
    let (&unused, key) = bits
        .split_first()
        .ok_or(DerError("a non-empty BIT STRING"))?;
    if unused != 0 {
        return Err(CertificateError::Malformed("a whole-byte public key"));
    }
    let mut pk = Der::new(key).sequence("a PKCS#1 RSAPublicKey")?;
    Ok(Some(RsaPublicKey {
        modulus: pk.unsigned_integer("the RSA modulus")?.to_vec(),
        exponent: pk.unsigned_integer("the RSA public exponent")?.to_vec(),
    }))
}
