//! Kubernetes quantities (`10`, `1.5Gi`, `500M`, `1e9`) as whole base units, and bytes
//! rendered the way kubectl users read them (`1.5Gi`, `512Mi`, `300`).
//!
//! berth counts things (image streams, tags, images) and bytes, never fractions of them,
//! so a quantity is parsed to a `u64` of base units and a fraction is rounded up: a
//! limit of `0.5` allows one, as Kubernetes rounds a fractional quantity of a count up.
//! Negative quantities limit nothing and are refused.

/// Parses a Kubernetes quantity into whole base units, rounding a fraction up. The
/// message says what was wrong and gives examples.
pub fn parse_quantity(text: &str) -> Result<u64, String> {
    let bad = |why: &str| {
        format!("{text:?} is not a quantity ({why}): write a whole number, optionally with a suffix, such as 10, 500M, 1.5Gi or 1e9")
    };
    let unsigned = match text.as_bytes().first() {
        None => return Err(bad("it is empty")),
        Some(b'-') => return Err(format!("{text:?} is negative: a quota or limit is zero or more")),
        Some(b'+') => &text[1..],
        Some(_) => text,
    };
    let number_len = unsigned.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(bad("it has no number"));
    }
    if fraction.contains('.') {
        return Err(bad("it has two decimal points"));
    }
    // 38 digits always fit in a u128; anything longer cannot be a limit berth can hold.
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 38 {
        return Err(format!("{text:?} is too large: berth holds quantities up to {}", u64::MAX));
    }
    let mantissa: u128 = if digits.is_empty() { 0 } else { digits.parse().map_err(|_| bad("its number is malformed"))? };
    // value = mantissa × 2^binary × 10^decimal, where decimal also undoes the fraction.
    let (binary, decimal): (u32, i64) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        exponent if exponent.starts_with(['e', 'E']) => {
            let digits = exponent[1..].strip_prefix('+').unwrap_or(&exponent[1..]);
            let (negative, digits) = match digits.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, digits),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 6 {
                return Err(bad(&format!("{exponent:?} is not a decimal exponent")));
            }
            let value: i64 = digits.parse().map_err(|_| bad("its exponent is malformed"))?;
            (0, if negative { -value } else { value })
        }
        other => {
            return Err(bad(&format!(
                "{other:?} is not a suffix berth knows: use Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024), k, M, G, T, P, E (powers of 1000) or an exponent such as e9"
            )));
        }
    };
    let too_large = || format!("{text:?} is too large: berth holds quantities up to {}", u64::MAX);
    if mantissa == 0 {
        return Ok(0);
    }
    let scaled = mantissa.checked_mul(1u128 << binary).ok_or_else(too_large)?;
    let exponent = decimal - fraction.len() as i64;
    let value = if exponent >= 0 {
        let power = u32::try_from(exponent).ok().and_then(|e| 10u128.checked_pow(e)).ok_or_else(too_large)?;
        scaled.checked_mul(power).ok_or_else(too_large)?
    } else {
        // Dividing by more than 10^38 leaves less than one unit: a positive amount rounds up to 1.
        match u32::try_from(-exponent).ok().and_then(|e| 10u128.checked_pow(e)) {
            Some(power) => scaled.div_ceil(power),
            None => 1,
        }
    };
    u64::try_from(value).map_err(|_| too_large())
}

/// The binary units bytes are shown in, largest first.
const BINARY_UNITS: [(&str, u32); 6] = [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)];

/// Bytes as kubectl users read them: the largest binary unit the amount reaches, with
/// one decimal when it is not whole (`1.5Gi`, `512Mi`, `1023.9Ki`); below 1Ki, the
/// number (`300`). What this prints parses back ([`parse_quantity`]) to within a
/// twentieth of its unit.
pub fn format_bytes(bytes: u64) -> String {
    for (suffix, shift) in BINARY_UNITS {
        let unit = 1u128 << shift;
        if u128::from(bytes) >= unit {
            // Tenths of the unit, rounded to the nearest.
            let tenths = (u128::from(bytes) * 10 + unit / 2) / unit;
            return match tenths % 10 {
                0 => format!("{}{suffix}", tenths / 10),
                rest => format!("{}.{rest}{suffix}", tenths / 10),
            };
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests;
