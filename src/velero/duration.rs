//! Go's `time.ParseDuration`, the only duration syntax Velero can decode.
//!
//! A value Velero's informer cannot decode (`30d`, `1w`) breaks listing of the whole
//! kind, so the grammar here follows Go's exactly: an optional sign, then one or more
//! `<decimal><unit>` parts with units ns, us, µs, ms, s, m, h; or a bare `0`.

/// Nanoseconds, or why the text is not a Go duration.
pub fn parse_go_duration(text: &str) -> Result<i128, String> {
    let original = text;
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(format!("invalid duration {original:?}"));
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits_end];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(format!("invalid duration {original:?}"));
        }
        rest = &rest[digits_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("missing unit in duration {original:?}")),
            other => {
                return Err(format!("unknown unit {other:?} in duration {original:?}"));
            }
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| format!("invalid duration {original:?}"))?
        };
        let mut part = whole
            .checked_mul(scale)
            .ok_or_else(|| format!("invalid duration {original:?}"))?;
        let mut divisor: i128 = 1;
        for digit in fraction.bytes().take(30) {
            divisor *= 10;
            part += i128::from(digit - b'0') * scale / divisor;
        }
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("invalid duration {original:?}"))?;
        if total > i128::from(i64::MAX) {
            return Err(format!("invalid duration {original:?}"));
        }
    }
    Ok(if negative { -total } else { total })
}

/// A span in one rounded unit, as people say it: "90s", "3m", "2h", "4d".
pub fn approximate(span: chrono::Duration) -> String {
    let seconds = span.num_seconds().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration as p;

    #[test]
    fn accepts_what_go_accepts() {
        assert_eq!(p("0"), Ok(0));
        assert_eq!(p("1m"), Ok(60_000_000_000));
        assert_eq!(p("720h0m0s"), Ok(720 * 3_600_000_000_000));
        assert_eq!(p("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(p(".5s"), Ok(500_000_000));
        assert_eq!(p("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(p("-1m"), Ok(-60_000_000_000));
        assert_eq!(p("10\u{b5}s"), Ok(10_000));
        assert_eq!(p("0s"), Ok(0));
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in [
            "",
            "30d",
            "1w",
            "1y",
            "10",
            "h",
            ".s",
            "1..5s",
            "1H",
            " 1m",
            "1m ",
            "--1m",
            "9999999999h",
        ] {
            assert!(p(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
