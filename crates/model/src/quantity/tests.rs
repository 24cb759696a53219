use proptest::prelude::*;

use super::*;

#[test]
fn quantities_parse_to_whole_base_units() {
    for (text, expected) in [
        ("0", 0),
        ("10", 10),
        ("+10", 10),
        ("007", 7),
        ("1k", 1_000),
        ("500M", 500_000_000),
        ("2G", 2_000_000_000),
        ("1T", 1_000_000_000_000),
        ("1P", 1_000_000_000_000_000),
        ("1E", 1_000_000_000_000_000_000),
        ("1Ki", 1_024),
        ("512Mi", 512 << 20),
        ("10Gi", 10 << 30),
        ("1Ti", 1 << 40),
        ("1Pi", 1 << 50),
        ("15Ei", 15 << 60),
        ("1.5Gi", 3 << 29),
        ("0.5Ki", 512),
        (".5Ki", 512),
        ("5.", 5),
        ("1e9", 1_000_000_000),
        ("1E3", 1_000),
        ("2e+3", 2_000),
        ("1.5e3", 1_500),
        ("0.0000000000000000000000000000000000000000001", 1),
        ("0.0", 0),
        ("0Ei", 0),
        ("18446744073709551615", u64::MAX),
    ] {
        assert_eq!(parse_quantity(text), Ok(expected), "{text}");
    }
}

#[test]
fn fractions_round_up_to_a_whole_unit() {
    for (text, expected) in [("0.5", 1), ("1.1", 2), ("500m", 1), ("1500m", 2), ("1n", 1), ("3u", 1), ("1e-3", 1), ("1.0000001Ki", 1025)] {
        assert_eq!(parse_quantity(text), Ok(expected), "{text}");
    }
}

#[test]
fn negatives_and_garbage_are_refused_with_a_reason() {
    for (text, words) in [
        ("", "it is empty"),
        ("-1", "is negative"),
        ("-0.5Gi", "is negative"),
        ("Gi", "it has no number"),
        (".", "it has no number"),
        ("1.2.3", "two decimal points"),
        ("10 Gi", "is not a suffix berth knows"),
        ("10GB", "\"GB\" is not a suffix berth knows"),
        ("10gi", "is not a suffix"),
        ("1e", "is not a decimal exponent"),
        ("1e1.5", "is not a decimal exponent"),
        ("1ex", "is not a decimal exponent"),
        ("1e9999999", "is not a decimal exponent"),
        (" 1", "it has no number"),
        ("16Ei", "too large"),
        ("18446744073709551616", "too large"),
        ("1e20", "too large"),
        ("123456789012345678901234567890123456789", "too large"),
    ] {
        let err = parse_quantity(text).expect_err(text);
        assert!(err.contains(words), "{text:?}: {words:?} in {err}");
    }
}

#[test]
fn bytes_are_shown_in_the_largest_binary_unit_they_reach() {
    for (bytes, shown) in [
        (0, "0"),
        (300, "300"),
        (1023, "1023"),
        (1024, "1Ki"),
        (1536, "1.5Ki"),
        (512 << 20, "512Mi"),
        (3 << 29, "1.5Gi"),
        (1_288_490_189, "1.2Gi"),
        (10 << 30, "10Gi"),
        ((1 << 20) - 1, "1024Ki"),
        (u64::MAX, "16Ei"),
    ] {
        assert_eq!(format_bytes(bytes), shown, "{bytes}");
    }
}

proptest! {
    #[test]
    fn shown_bytes_parse_back_within_rounding(bytes in prop_oneof![0u64..4096, any::<u64>(), (0u32..64).prop_map(|s| 1u64 << s)]) {
        let shown = format_bytes(bytes);
        let unit = BINARY_UNITS.iter().map(|(_, shift)| 1u128 << shift).find(|unit| u128::from(bytes) >= *unit).unwrap_or(1);
        match parse_quantity(&shown) {
            Ok(parsed) => prop_assert!(u128::from(parsed).abs_diff(u128::from(bytes)) <= unit / 20 + 2, "{bytes} shown as {shown} parses to {parsed}"),
            // Only the very top of the range rounds past what a u64 holds.
            Err(err) => prop_assert!(bytes > u64::MAX - (1u64 << 56) && err.contains("too large"), "{bytes} shown as {shown}: {err}"),
        }
    }

    #[test]
    fn whole_numbers_parse_as_themselves(n in any::<u64>()) {
        prop_assert_eq!(parse_quantity(&n.to_string()), Ok(n));
    }

    #[test]
    fn any_text_parses_or_is_refused_with_a_message(text in "[-+0-9.eEkMGTPKimnu ]{0,12}") {
        if let Err(err) = parse_quantity(&text) {
            let quoted = format!("{text:?}");
            prop_assert!(err.contains(&quoted), "{} should quote {}", err, quoted);
        }
    }
}
