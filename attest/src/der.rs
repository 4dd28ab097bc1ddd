//! The strictness x509-parser leaves out: a certificate's outer
//! signatureAlgorithm must be byte for byte the one inside the signed
//! part (RFC 5280, §4.1.1.2), and its signature BIT STRING has no unused
//! bits. Otherwise bytes outside what the issuer signed could change
//! without the certificate being refused.

/// One DER element at the start of `bytes`: (tag, header length, total
/// length), definite lengths only.
fn element(bytes: &[u8]) -> Option<(u8, usize, usize)> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (2 + n, len)
    };
    let total = header.checked_add(len)?;
    (total <= bytes.len()).then_some((tag, header, total))
}

/// A DER element: its tag, its whole encoding, its contents.
type Element<'a> = (u8, &'a [u8], &'a [u8]);

/// Splits `bytes` into its consecutive elements.
fn elements(mut bytes: &[u8]) -> Option<Vec<Element<'_>>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (tag, header, total) = element(bytes)?;
        out.push((tag, &bytes[..total], &bytes[header..total]));
        bytes = &bytes[total..];
    }
    Some(out)
}

/// The contents of the single element that makes up `bytes`.
fn only(bytes: &[u8], tag: u8) -> Option<&[u8]> {
    match elements(bytes)?.as_slice() {
        [(t, _, contents)] if *t == tag => Some(contents),
        _ => None,
    }
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const VERSION: u8 = 0xa0;

/// Checks the certificate's outer structure, see the module documentation.
pub(crate) fn check_certificate(der: &[u8]) -> Result<(), &'static str> {
    let malformed = "its outer structure is not DER";
    let outer = elements(only(der, SEQUENCE).ok_or(malformed)?).ok_or(malformed)?;
    let [(SEQUENCE, _, tbs), (SEQUENCE, algorithm, _), (BIT_STRING, _, signature)] =
        outer.as_slice()
    else {
        return Err(malformed);
    };
    if signature.first() != Some(&0) {
        return Err("its signature has unused bits");
    }
    let inner = elements(tbs).ok_or(malformed)?;
    let signed_algorithm = match inner.as_slice() {
        [(VERSION, _, _), (INTEGER, _, _), (SEQUENCE, a, _), ..]
        | [(INTEGER, _, _), (SEQUENCE, a, _), ..] => *a,
        _ => return Err(malformed),
    };
    if signed_algorithm != *algorithm {
        return Err("its signature algorithm is not the one its issuer signed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn certificate() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["ek".to_owned()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    /// Where the outer signatureAlgorithm starts.
    fn outer_algorithm(der: &[u8]) -> usize {
        let (_, outer_header, _) = element(der).unwrap();
        let (_, _, tbs_len) = element(&der[outer_header..]).unwrap();
        outer_header + tbs_len
    }

    #[test]
    fn a_well_formed_certificate_passes() {
        check_certificate(&certificate()).unwrap();
    }

    #[test]
    fn an_outer_algorithm_unlike_the_signed_one_is_refused() {
        let mut der = certificate();
        let at = outer_algorithm(&der);
        let last = der[at + 1] as usize + at + 1;
        der[last] ^= 1;
        assert_eq!(
            check_certificate(&der),
            Err("its signature algorithm is not the one its issuer signed")
        );
    }

    #[test]
    fn unused_bits_in_the_signature_are_refused() {
        let mut der = certificate();
        let at = outer_algorithm(&der);
        let (_, _, total) = element(&der[at..]).unwrap();
        let sig = at + total;
        let (_, header, _) = element(&der[sig..]).unwrap();
        der[sig + header] = 1;
        assert_eq!(
            check_certificate(&der),
            Err("its signature has unused bits")
        );
    }

    #[test]
    fn cut_or_extended_certificates_are_refused() {
        let der = certificate();
        assert!(check_certificate(&der[..der.len() - 1]).is_err());
        assert!(check_certificate(&[der.as_slice(), &[0]].concat()).is_err());
    }
}
