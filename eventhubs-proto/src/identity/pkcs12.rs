//! PKCS#12 / PFX files (RFC 7292) and encrypted PKCS#8 keys (RFC 5958,
//! RFC 8018): the reading half only, for client certificates.
//!
//! Supported, as OpenSSL 1.x and 3.x, .NET and Azure Key Vault write them:
//! DER-encoded PFX (version 3) with an HMAC-SHA-1 or HMAC-SHA-256 integrity
//! MAC (RFC 7292 appendix B key derivation) or none; authenticated-safe
//! contents that are plain `data` or password-encrypted `encryptedData`;
//! `keyBag`, `pkcs8ShroudedKeyBag` and `certBag` (X.509) safe bags. Ciphers:
//! PBES2 (PBKDF2 with HMAC-SHA-1 or HMAC-SHA-256, then AES-128/192/256-CBC
//! or DES-EDE3-CBC; RFC 8018) and the PKCS#12 PBEs
//! `pbeWithSHAAnd3-KeyTripleDES-CBC`, `pbeWithSHAAnd128BitRC2-CBC` and
//! `pbeWithSHAAnd40BitRC2-CBC` (RFC 7292 appendix C). Other bags (CRLs,
//! secrets) are skipped; other algorithms are refused by name.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, InnerIvInit, KeyInit, KeyIvInit};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::digest::{core_api::BlockSizeUser, Digest, FixedOutputReset};
use sha2::Sha256;

use super::certificate::CertificateError;
use super::der::{oid, tag, Der, DerError};

/// Highest iteration count accepted in a KDF (OpenSSL writes 2048, .NET
/// 2000, Key Vault 2000 to 600000); more is refused rather than spun on.
const MAX_ITERATIONS: u64 = 10_000_000;

impl From<DerError> for CertificateError {
    fn from(e: DerError) -> Self {
        CertificateError::Malformed(e.0)
    }
}

/// What a PFX holds: certificates (DER) and private keys (PKCS#8 DER).
#[derive(Default)]
pub(crate) struct Contents {
    pub(crate) certificates: Vec<Vec<u8>>,
    pub(crate) keys: Vec<Vec<u8>>,
}

/// Decodes `pfx` with `password` (the empty string for none).
pub(crate) fn parse(pfx: &[u8], password: &str) -> Result<Contents, CertificateError> {
    let mut outer = Der::new(pfx);
    let mut pfx_seq = outer.sequence("a PFX SEQUENCE (a DER-encoded PKCS#12 file)")?;
    if pfx_seq.small_uint("the PFX version")? != 3 {
        return Err(CertificateError::Malformed("PFX version 3"));
    }
    let mut auth_safe = pfx_seq.sequence("the PFX authSafe ContentInfo")?;
    if auth_safe.oid("the authSafe content type")? != oid::PKCS7_DATA {
        return Err(CertificateError::Unsupported(
            "a PFX whose integrity mode is public-key (signed data)".into(),
        ));
    }
    let mut explicit = Der::new(auth_safe.expect(tag::CONTEXT_0, "the authSafe content")?);
    let safe_bytes = explicit.octet_string("the authSafe OCTET STRING")?;

    // The passwords to try: the BMPString form and, for an empty password,
    // also no bytes at all (OpenSSL tries both the same way).
    let mut candidates = vec![bmp_password(password)];
    if password.is_empty() {
        candidates.push(Vec::new());
    }
    let bmp = if pfx_seq.is_empty() {
        candidates.swap_remove(0)
    } else {
        let mac = pfx_seq.sequence("the PFX MacData")?;
        candidates
            .into_iter()
            .find(|pw| verify_mac(mac, pw, safe_bytes).unwrap_or(false))
            .ok_or_else(
                || match verify_mac(mac, &bmp_password(password), safe_bytes) {
                    Err(e) => e,
                    Ok(_) => CertificateError::WrongPassword,
                },
            )?
    };

    let mut contents = Contents::default();
    let mut infos = Der::new(safe_bytes).sequence("the AuthenticatedSafe SEQUENCE")?;
    while !infos.is_empty() {
        let mut info = infos.sequence("a ContentInfo")?;
        let kind = info.oid("a ContentInfo type")?;
        let mut content = Der::new(info.expect(tag::CONTEXT_0, "a ContentInfo content")?);
        if kind == oid::PKCS7_DATA {
            read_safe_contents(content.octet_string("data")?, password, &bmp, &mut contents)?;
        } else if kind == oid::PKCS7_ENCRYPTED_DATA {
            let mut encrypted = content.sequence("EncryptedData")?;
            encrypted.small_uint("the EncryptedData version")?;
            let mut eci = encrypted.sequence("EncryptedContentInfo")?;
            eci.oid("the encrypted content type")?;
            let algorithm = eci.element()?.2;
            let ciphertext = implicit_octets(&mut eci)?;
            let plain = decrypt(algorithm, &ciphertext, password, &bmp)?;
            read_safe_contents(&plain, password, &bmp, &mut contents)?;
        } else {
            return Err(CertificateError::Unsupported(
                "a PFX content that is enveloped (public-key encrypted)".into(),
            ));
        }
    }
    Ok(contents)
}

/// `[0] IMPLICIT OCTET STRING`, primitive or (BER) constructed of chunks.
fn implicit_octets(d: &mut Der<'_>) -> Result<Vec<u8>, CertificateError> {
    let (t, c, _) = d.element()?;
    match t {
        tag::CONTEXT_0_PRIMITIVE => Ok(c.to_vec()),
        tag::CONTEXT_0 => {
            let mut chunks = Der::new(c);
            let mut out = Vec::with_capacity(c.len());
            while !chunks.is_empty() {
                out.extend_from_slice(chunks.octet_string("an encrypted content chunk")?);
            }
            Ok(out)
        }
        _ => Err(CertificateError::Malformed("the encrypted content")),
    }
}

fn read_safe_contents(
    bytes: &[u8],
    password: &str,
    bmp: &[u8],
    out: &mut Contents,
) -> Result<(), CertificateError> {
    let mut bags = Der::new(bytes).sequence("SafeContents")?;
    while !bags.is_empty() {
        let mut bag = bags.sequence("a SafeBag")?;
        let id = bag.oid("a SafeBag type")?;
        let mut value = Der::new(bag.expect(tag::CONTEXT_0, "a SafeBag value")?);
        if id == oid::KEY_BAG {
            out.keys.push(value.element()?.2.to_vec());
        } else if id == oid::SHROUDED_KEY_BAG {
            let (_, _, epki) = value.element()?;
            out.keys
                .push(decrypt_private_key_info(epki, password, bmp)?);
        } else if id == oid::CERT_BAG {
            let mut cert_bag = value.sequence("a CertBag")?;
            if cert_bag.oid("a CertBag type")? == oid::X509_CERTIFICATE {
                let mut v = Der::new(cert_bag.expect(tag::CONTEXT_0, "a CertBag value")?);
                out.certificates
                    .push(v.octet_string("an X.509 certificate")?.to_vec());
            }
        }
        // CRL, secret and nested bags carry nothing a client needs.
    }
    Ok(())
}

/// Decrypts an `EncryptedPrivateKeyInfo` (a PKCS#8 "ENCRYPTED PRIVATE KEY"
/// or a shrouded key bag) into the PKCS#8 `PrivateKeyInfo` DER.
pub(crate) fn decrypt_private_key_info(
    der: &[u8],
    password: &str,
    bmp: &[u8],
) -> Result<Vec<u8>, CertificateError> {
    let mut epki = Der::new(der).sequence("EncryptedPrivateKeyInfo")?;
    let algorithm = epki.element()?.2;
    let data = epki.octet_string("the encrypted private key")?;
    decrypt(algorithm, data, password, bmp)
}

/// The BMPString form of a password for the PKCS#12 KDF: UTF-16 big-endian
/// with a terminating zero (RFC 7292 B.1).
pub(crate) fn bmp_password(password: &str) -> Vec<u8> {
    let mut out: Vec<u8> = password.encode_utf16().flat_map(u16::to_be_bytes).collect();
    out.extend_from_slice(&[0, 0]);
    out
}

fn iterations(d: &mut Der<'_>) -> Result<u32, CertificateError> {
    let n = d.small_uint("an iteration count")?;
    if n == 0 || n > MAX_ITERATIONS {
        return Err(CertificateError::Malformed(
            "an iteration count from 1 to 10,000,000",
        ));
    }
    Ok(n as u32)
}

fn verify_mac(mut mac_data: Der<'_>, bmp: &[u8], data: &[u8]) -> Result<bool, CertificateError> {
    let mut digest_info = mac_data.sequence("the MAC DigestInfo")?;
    let mut algorithm = digest_info.sequence("the MAC algorithm")?;
    let hash = algorithm.oid("the MAC hash")?;
    let expected = digest_info.octet_string("the MAC value")?;
    let salt = mac_data.octet_string("the MAC salt")?;
    let rounds = if mac_data.is_empty() {
        1
    } else {
        iterations(&mut mac_data)?
    };
    if hash == oid::SHA1 {
        let key = pkcs12_kdf::<Sha1>(3, bmp, salt, rounds, 20);
        Ok(hmac_matches::<Hmac<Sha1>>(&key, data, expected))
    } else if hash == oid::SHA256 {
        let key = pkcs12_kdf::<Sha256>(3, bmp, salt, rounds, 32);
        Ok(hmac_matches::<Hmac<Sha256>>(&key, data, expected))
    } else {
        Err(CertificateError::Unsupported(format!(
            "PFX integrity MAC with hash {}",
            oid_text(hash)
        )))
    }
}

fn hmac_matches<M: Mac + KeyInit>(key: &[u8], data: &[u8], expected: &[u8]) -> bool {
    let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else {
        return false;
    };
    mac.update(data);
    mac.verify_slice(expected).is_ok()
}

/// The PKCS#12 key derivation (RFC 7292 appendix B.2): `id` 1 for a key,
/// 2 for an IV, 3 for a MAC key.
pub(crate) fn pkcs12_kdf<D: Digest + FixedOutputReset + BlockSizeUser>(
    id: u8,
    bmp_password: &[u8],
    salt: &[u8],
    rounds: u32,
    n: usize,
) -> Vec<u8> {
    let u = <D as Digest>::output_size();
    let v = D::block_size();
    let fill = |src: &[u8]| -> Vec<u8> {
        if src.is_empty() {
            return Vec::new();
        }
        let len = v * src.len().div_ceil(v);
        src.iter().copied().cycle().take(len).collect()
    };
    let d = vec![id; v];
    let mut i = fill(salt);
    i.extend(fill(bmp_password));
    let mut out = Vec::with_capacity(n + u);
    let mut hasher = D::new();
    while out.len() < n {
        Digest::update(&mut hasher, &d);
        Digest::update(&mut hasher, &i);
        let mut a = hasher.finalize_reset();
        for _ in 1..rounds {
            Digest::update(&mut hasher, &a);
            a = hasher.finalize_reset();
        }
        out.extend_from_slice(&a);
        if out.len() >= n {
            break;
        }
        let b: Vec<u8> = a.iter().copied().cycle().take(v).collect();
        for block in i.chunks_mut(v) {
            // block = (block + b + 1) mod 2^(8v), big-endian.
            let mut carry = 1u16;
            for (x, y) in block.iter_mut().rev().zip(b.iter().rev()) {
                let sum = u16::from(*x) + u16::from(*y) + carry;
                *x = sum as u8;
                carry = sum >> 8;
            }
        }
    }
    out.truncate(n);
    out
}

/// Decrypts `data` with the `AlgorithmIdentifier` DER `algorithm`.
fn decrypt(
    algorithm: &[u8],
    data: &[u8],
    password: &str,
    bmp: &[u8],
) -> Result<Vec<u8>, CertificateError> {
    let mut alg = Der::new(algorithm).sequence("an encryption AlgorithmIdentifier")?;
    let id = alg.oid("an encryption algorithm")?;
    if id == oid::PBES2 {
        let mut params = alg.sequence("PBES2 parameters")?;
        let mut kdf = params.sequence("the PBES2 key derivation")?;
        if kdf.oid("the PBES2 key derivation function")? != oid::PBKDF2 {
            return Err(CertificateError::Unsupported(
                "a PBES2 key derivation other than PBKDF2".into(),
            ));
        }
        let mut kdf_params = kdf.sequence("PBKDF2 parameters")?;
        let salt = kdf_params.octet_string("the PBKDF2 salt")?;
        let rounds = iterations(&mut kdf_params)?;
        if kdf_params.peek_tag() == Some(tag::INTEGER) {
            kdf_params.skip()?; // keyLength: fixed by the cipher
        }
        let prf = if kdf_params.is_empty() {
            oid::HMAC_SHA1
        } else {
            kdf_params
                .sequence("the PBKDF2 PRF")?
                .oid("the PBKDF2 PRF")?
        };
        let mut scheme = params.sequence("the PBES2 encryption scheme")?;
        let cipher = scheme.oid("the PBES2 cipher")?;
        let iv = scheme.octet_string("the PBES2 IV")?;
        let key_len = match cipher {
            c if c == oid::AES128_CBC => 16,
            c if c == oid::AES192_CBC => 24,
            c if c == oid::AES256_CBC => 32,
            c if c == oid::DES_EDE3_CBC => 24,
            c => {
                return Err(CertificateError::Unsupported(format!(
                    "PBES2 cipher {}",
                    oid_text(c)
                )))
            }
        };
        let mut key = vec![0u8; key_len];
        // PBES2 in PKCS#12 and PKCS#8 takes the password's UTF-8 bytes.
        let pw = password.as_bytes();
        if prf == oid::HMAC_SHA256 {
            pbkdf2::pbkdf2_hmac::<Sha256>(pw, salt, rounds, &mut key);
        } else if prf == oid::HMAC_SHA1 {
            pbkdf2::pbkdf2_hmac::<Sha1>(pw, salt, rounds, &mut key);
        } else {
            return Err(CertificateError::Unsupported(format!(
                "PBKDF2 with PRF {}",
                oid_text(prf)
            )));
        }
        match key_len {
            _ if cipher == oid::DES_EDE3_CBC => cbc_decrypt::<des::TdesEde3>(&key, iv, data),
            16 => cbc_decrypt::<aes::Aes128>(&key, iv, data),
            24 => cbc_decrypt::<aes::Aes192>(&key, iv, data),
            _ => cbc_decrypt::<aes::Aes256>(&key, iv, data),
        }
    } else if id == oid::PBE_SHA1_3DES || id == oid::PBE_SHA1_RC2_128 || id == oid::PBE_SHA1_RC2_40
    {
        let mut params = alg.sequence("PKCS#12 PBE parameters")?;
        let salt = params.octet_string("the PBE salt")?;
        let rounds = iterations(&mut params)?;
        let key_len = match id {
            i if i == oid::PBE_SHA1_3DES => 24,
            i if i == oid::PBE_SHA1_RC2_128 => 16,
            _ => 5,
        };
        let key = pkcs12_kdf::<Sha1>(1, bmp, salt, rounds, key_len);
        let iv = pkcs12_kdf::<Sha1>(2, bmp, salt, rounds, 8);
        if id == oid::PBE_SHA1_3DES {
            cbc_decrypt::<des::TdesEde3>(&key, &iv, data)
        } else {
            let rc2 = rc2::Rc2::new_with_eff_key_len(&key, key_len * 8);
            let dec = cbc::Decryptor::<rc2::Rc2>::inner_iv_slice_init(rc2, &iv)
                .map_err(|_| CertificateError::Malformed("an 8-byte IV"))?;
            unpad(dec, data)
        }
    } else {
        Err(CertificateError::Unsupported(format!(
            "encryption algorithm {}",
            oid_text(id)
        )))
    }
}

fn cbc_decrypt<C>(key: &[u8], iv: &[u8], data: &[u8]) -> Result<Vec<u8>, CertificateError>
where
    C: aes::cipher::BlockCipher + aes::cipher::BlockDecryptMut + KeyInit,
{
    let dec = cbc::Decryptor::<C>::new_from_slices(key, iv)
        .map_err(|_| CertificateError::Malformed("an IV as long as the cipher's block"))?;
    unpad(dec, data)
}

fn unpad<C>(dec: cbc::Decryptor<C>, data: &[u8]) -> Result<Vec<u8>, CertificateError>
where
    C: aes::cipher::BlockCipher + aes::cipher::BlockDecryptMut,
{
    let mut buf = data.to_vec();
    let len = dec
        .decrypt_padded_mut::<Pkcs7>(&mut buf)
        .map_err(|_| CertificateError::WrongPassword)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// Dotted form of an encoded OID, for error messages.
pub(crate) fn oid_text(encoded: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in encoded {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bmp_passwords() {
        assert_eq!(bmp_password(""), vec![0, 0]);
        assert_eq!(bmp_password("ab"), vec![0, b'a', 0, b'b', 0, 0]);
        assert_eq!(bmp_password("é"), vec![0, 0xe9, 0, 0]);
    }

    #[test]
    fn oid_text_reads_arcs() {
        assert_eq!(oid_text(oid::AES256_CBC), "2.16.840.1.101.3.4.1.42");
        assert_eq!(oid_text(oid::SHA1), "1.3.14.3.2.26");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&b""[..], b"\x30", b"\x30\x03\x02\x01\x03", b"-----BEGIN"] {
            assert!(parse(bytes, "pw").is_err(), "{bytes:?}");
        }
    }
}
