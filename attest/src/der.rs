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
