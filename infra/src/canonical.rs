//! Canonical JSON after RFC 8785 (the JSON Canonicalization Scheme): object keys sorted by their UTF-16 code
//! units, no insignificant white space, numbers and strings in one fixed form. Hashes are computed over it so
//! that a value read back from `jsonb` (which reorders keys and may rewrite numbers) hashes exactly as it did
//! when it was written, and so that anyone can reproduce the bytes with any RFC 8785 implementation.

use serde_json::Value;

/// The RFC 8785 bytes of `value`: what the event chain MACs.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, serde_json::Error> {
    serde_json_canonicalizer::to_vec(value)
}

/// Renders `value` canonically, for fingerprints that are only compared with each other.
pub fn to_string(value: &Value) -> String {
    match serde_json_canonicalizer::to_string(value) {
        Ok(canonical) => canonical,
        // Unreachable for a `Value`, whose numbers are finite and whose keys are unique strings. serde_json's
        // own rendering (keys sorted, no white space) still gives the same value the same text.
        Err(_) => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{to_string, to_vec};
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_depth() {
        let value = json!({"b": 1, "a": {"d": [true, null], "c": "x"}});
        assert_eq!(
            to_string(&value),
            r#"{"a":{"c":"x","d":[true,null]},"b":1}"#
        );
    }

    #[test]
    fn numbers_and_strings_take_their_rfc_8785_form() {
        // RFC 8785 §3.2.2.3 and §3.2.2.2: ECMAScript number form, only the mandatory escapes.
        let value = json!({"n": [1.0, 1e21, 0.000001, -0.0], "s": "\u{20ac}\n\u{1}"});
        assert_eq!(
            String::from_utf8(to_vec(&value).unwrap()).unwrap(),
            "{\"n\":[1,1e+21,0.000001,0],\"s\":\"\u{20ac}\\n\\u0001\"}"
        );
    }
}
