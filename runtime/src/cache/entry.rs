//! The on-disk format of one entry: a header line naming the key and the body's SHA-256, then
//! the PTX. The header is a PTX comment, so an entry can be handed to ptxas as it is.

use sha2::{Digest, Sha256};

use super::key::{Key, hex};

const MAGIC: &str = "// tessera-cache v1";

pub(super) fn encode(key: &Key, ptx: &str) -> String {
    let sum = hex(&Sha256::digest(ptx.as_bytes()));
    format!("{MAGIC} key={key} sha256={sum}\n{ptx}")
}

/// The PTX of an entry read back, or why it cannot be trusted. The key is checked too, so a file
/// copied or renamed onto another key's name is not served for that key.
pub(super) fn decode<'a>(key: &Key, bytes: &'a [u8]) -> Result<&'a str, String> {
    let Some(newline) = bytes.iter().position(|&b| b == b'\n') else {
        return Err(if bytes.is_empty() {
            "empty file"
        } else {
            "no header line"
        }
        .into());
    };
    let (header, body) = (&bytes[..newline], &bytes[newline + 1..]);
    let header = std::str::from_utf8(header).map_err(|_| "header is not UTF-8".to_string())?;
    let rest = header
        .strip_prefix(MAGIC)
        .and_then(|r| r.strip_prefix(" key="))
        .ok_or("unrecognised header")?;
    let (found_key, sum) = rest
        .split_once(" sha256=")
        .ok_or("header has no checksum")?;
    if found_key != key.as_str() {
        return Err(format!("header names key {found_key}"));
    }
    if sum != hex(&Sha256::digest(body)) {
        return Err("checksum mismatch".into());
    }
    std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())
}
