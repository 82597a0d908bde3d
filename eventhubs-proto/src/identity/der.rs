//! The few DER (ITU-T X.690) reads that certificates, PKCS#8 keys and
//! PKCS#12 files need: tag-length-value elements with definite lengths,
//! as slices of the input. Nothing is allocated, every length is checked
//! against the bytes present, and nesting is left to the caller (each
//! [`Der::element`] reads one level).

/// Universal and context tags used here.
pub(crate) mod tag {
    pub(crate) const INTEGER: u8 = 0x02;
    pub(crate) const BIT_STRING: u8 = 0x03;
    pub(crate) const OCTET_STRING: u8 = 0x04;
    pub(crate) const OID: u8 = 0x06;
    pub(crate) const SEQUENCE: u8 = 0x30;
    /// `[0]` constructed (explicit tagging, e.g. ContentInfo's content).
    pub(crate) const CONTEXT_0: u8 = 0xa0;
    /// `[0]` primitive (implicit OCTET STRING, e.g. encryptedContent).
    pub(crate) const CONTEXT_0_PRIMITIVE: u8 = 0x80;
}

/// Bytes that are not the DER expected; the text says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DerError(pub(crate) &'static str);

/// A cursor over DER bytes.
#[derive(Clone, Copy)]
pub(crate) struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Der { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The tag of the next element, without reading it.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Reads the next element: its tag, its contents, and the whole
    /// encoding (tag and length included).
    pub(crate) fn element(&mut self) -> Result<(u8, &'a [u8], &'a [u8]), DerError> {
        let all = self.rest;
        let (&t, rest) = all.split_first().ok_or(DerError("an element"))?;
        if t & 0x1f == 0x1f {
            return Err(DerError("a one-byte tag"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError("a length"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(DerError("a definite length of at most 4 bytes"));
            }
            let (bytes, after) = rest
                .split_at_checked(n)
                .ok_or(DerError("the length's bytes"))?;
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        let (contents, after) = rest
            .split_at_checked(len)
            .ok_or(DerError("contents as long as the length says"))?;
        let header = all.len() - rest.len();
        self.rest = after;
        Ok((t, contents, &all[..header + len]))
    }

    /// Reads an element that must have tag `want`; returns its contents.
    pub(crate) fn expect(&mut self, want: u8, what: &'static str) -> Result<&'a [u8], DerError> {
        let (t, contents, _) = self.element().map_err(|_| DerError(what))?;
        if t != want {
            return Err(DerError(what));
        }
        Ok(contents)
    }

    /// A SEQUENCE's contents as a new cursor.
    pub(crate) fn sequence(&mut self, what: &'static str) -> Result<Der<'a>, DerError> {
        self.expect(tag::SEQUENCE, what).map(Der::new)
    }

    /// An OBJECT IDENTIFIER's encoded arcs (compare with the constants in
    /// [`oid`]).
    pub(crate) fn oid(&mut self, what: &'static str) -> Result<&'a [u8], DerError> {
        self.expect(tag::OID, what)
    }

    /// An OCTET STRING's contents.
    pub(crate) fn octet_string(&mut self, what: &'static str) -> Result<&'a [u8], DerError> {
        self.expect(tag::OCTET_STRING, what)
    }

    /// A non-negative INTEGER that fits in a `u64`.
    pub(crate) fn small_uint(&mut self, what: &'static str) -> Result<u64, DerError> {
        let bytes = self.unsigned_integer(what)?;
        if bytes.len() > 8 {
            return Err(DerError(what));
        }
        Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// A non-negative INTEGER's magnitude, without leading zero bytes.
    pub(crate) fn unsigned_integer(&mut self, what: &'static str) -> Result<&'a [u8], DerError> {
        let bytes = self.expect(tag::INTEGER, what)?;
        if bytes.is_empty() || bytes[0] & 0x80 != 0 {
            return Err(DerError(what));
        }
        let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        Ok(&bytes[first..])
    }

    /// Skips the next element, whatever it is.
    pub(crate) fn skip(&mut self) -> Result<(), DerError> {
        self.element().map(|_| ())
    }
}

/// Encoded object identifiers (the contents of the OID element).
pub(crate) mod oid {
    /// 1.2.840.113549.1.1.1 rsaEncryption.
    pub(crate) const RSA_ENCRYPTION: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// 1.2.840.113549.1.7.1 data.
    pub(crate) const PKCS7_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    /// 1.2.840.113549.1.7.6 encryptedData.
    pub(crate) const PKCS7_ENCRYPTED_DATA: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06];
    /// 1.2.840.113549.1.12.10.1.1 keyBag.
    pub(crate) const KEY_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x01,
    ];
    /// 1.2.840.113549.1.12.10.1.2 pkcs8ShroudedKeyBag.
    pub(crate) const SHROUDED_KEY_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02,
    ];
    /// 1.2.840.113549.1.12.10.1.3 certBag.
    pub(crate) const CERT_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x03,
    ];
    /// 1.2.840.113549.1.9.22.1 x509Certificate (certBag type).
    pub(crate) const X509_CERTIFICATE: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x16, 0x01];
    /// 1.2.840.113549.1.12.1.3 pbeWithSHAAnd3-KeyTripleDES-CBC.
    pub(crate) const PBE_SHA1_3DES: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x03];
    /// 1.2.840.113549.1.12.1.5 pbeWithSHAAnd128BitRC2-CBC.
    pub(crate) const PBE_SHA1_RC2_128: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x05];
    /// 1.2.840.113549.1.12.1.6 pbeWithSHAAnd40BitRC2-CBC.
    pub(crate) const PBE_SHA1_RC2_40: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x06];
    /// 1.2.840.113549.1.5.13 PBES2.
    pub(crate) const PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
    /// 1.2.840.113549.1.5.12 PBKDF2.
    pub(crate) const PBKDF2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c];
    /// 1.2.840.113549.2.7 hmacWithSHA1.
    pub(crate) const HMAC_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x07];
    /// 1.2.840.113549.2.9 hmacWithSHA256.
    pub(crate) const HMAC_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09];
    /// 2.16.840.1.101.3.4.1.2 aes128-CBC.
    pub(crate) const AES128_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02];
    /// 2.16.840.1.101.3.4.1.22 aes192-CBC.
    pub(crate) const AES192_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x16];
    /// 2.16.840.1.101.3.4.1.42 aes256-CBC.
    pub(crate) const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
    /// 1.2.840.113549.3.7 des-EDE3-CBC.
    pub(crate) const DES_EDE3_CBC: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x03, 0x07];
    /// 1.3.14.3.2.26 sha1.
    pub(crate) const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
    /// 2.16.840.1.101.3.4.2.1 sha256.
    pub(crate) const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths_and_refuses_truncation() {
        let mut d = Der::new(&[0x04, 0x02, 0xaa, 0xbb, 0x05, 0x00]);
        let (t, c, all) = d.element().expect("octet string");
        assert_eq!(
            (t, c, all),
            (0x04, &[0xaa, 0xbb][..], &[0x04, 0x02, 0xaa, 0xbb][..])
        );
        assert_eq!(d.peek_tag(), Some(0x05));
        d.skip().expect("null");
        assert!(d.is_empty());

        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat_n(7u8, 0x80));
        assert_eq!(Der::new(&long).octet_string("x").expect("long").len(), 0x80);
        assert!(Der::new(&long[..long.len() - 1]).element().is_err());
        assert!(Der::new(&[0x04, 0x85, 1, 2, 3, 4, 5]).element().is_err());
        assert!(Der::new(&[0x04, 0x80]).element().is_err(), "indefinite");
        assert!(Der::new(&[0x1f, 0x01, 0x00]).element().is_err());
        assert!(Der::new(&[0x04]).element().is_err());
    }

    #[test]
    fn integers() {
        assert_eq!(Der::new(&[0x02, 0x02, 0x00, 0x80]).small_uint("i"), Ok(128));
        assert_eq!(
            Der::new(&[0x02, 0x01, 0x80]).small_uint("i"),
            Err(DerError("i")),
            "negative"
        );
        assert_eq!(
            Der::new(&[0x02, 0x03, 0x00, 0x01, 0x02]).unsigned_integer("i"),
            Ok(&[0x01, 0x02][..])
        );
    }
}
