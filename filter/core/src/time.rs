//! RFC 3339 timestamps (`2026-12-01T10:00:00Z`, `2026-12-01T12:00:00.5+02:00`) to and from Unix
//! milliseconds, for ramp start times. Written here rather than pulled from a date crate: the
//! filter needs exactly this one format, and the `.wasm` stays small.

/// Milliseconds since the Unix epoch (negative before 1970).
pub type UnixMs = i64;

/// Parses an RFC 3339 date-time with a `Z` or `±HH:MM` offset. Fractions of a second beyond
/// the millisecond are truncated. A leap second (`:60`) is read as the first moment of the next
/// minute. The error says what is wrong, for a `path: reason` message.
pub fn parse_rfc3339(text: &str) -> Result<UnixMs, String> {
    let b = text.as_bytes();
    let digits = |from: usize, len: usize| -> Result<i64, String> {
        let part = b.get(from..from + len).ok_or("is too short")?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(format!(
                "has a non-digit where {len} digit(s) are expected (position {})",
                from + 1
            ));
        }
        Ok(part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let expect = |at: usize, what: &[u8]| -> Result<(), String> {
        match b.get(at) {
            Some(c) if what.contains(c) => Ok(()),
            _ => Err(format!(
                "expects {} at position {}",
                what.iter()
                    .map(|&c| format!("'{}'", c as char))
                    .collect::<Vec<_>>()
                    .join(" or "),
                at + 1
            )),
        }
    };
    let year = digits(0, 4)?;
    expect(4, b"-")?;
    let month = digits(5, 2)?;
    expect(7, b"-")?;
    let day = digits(8, 2)?;
    expect(10, b"Tt")?;
    let hour = digits(11, 2)?;
    expect(13, b":")?;
    let minute = digits(14, 2)?;
    expect(16, b":")?;
    let second = digits(17, 2)?;
    let mut at = 19;
    let mut millis = 0i64;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 3 {
                millis = millis * 10 + i64::from(b.get(at).map_or(0, |d| d - b'0'));
            }
            at += 1;
        }
        if at == start {
            return Err("has a '.' without fraction digits".into());
        }
        for _ in (at - start)..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(at) {
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let h = digits(at + 1, 2)?;
            expect(at + 3, b":")?;
            let m = digits(at + 4, 2)?;
            if h > 23 || m > 59 {
                return Err(format!(
                    "has an invalid offset {}",
                    text.get(at..at + 6).unwrap_or("")
                ));
            }
            at += 6;
            if sign == b'-' {
                -(h * 60 + m)
            } else {
                h * 60 + m
            }
        }
        _ => return Err("needs a time zone: Z or an offset such as +02:00".into()),
    };
    if at != b.len() {
        return Err("has extra characters after the time zone".into());
    }
    if !(1..=12).contains(&month) {
        return Err(format!("has month {month}"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(format!(
            "has day {day}, but {year:04}-{month:02} has {} days",
            days_in_month(year, month)
        ));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(format!(
            "has an invalid time of day {hour:02}:{minute:02}:{second:02}"
        ));
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
}

/// `YYYY-MM-DDTHH:MM:SSZ` (with `.mmm` when the milliseconds are not 0), always in UTC.
pub fn format_rfc3339(ms: UnixMs) -> String {
    let seconds = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let time = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let clock = format!("{:02}:{:02}:{:02}", time / 3600, time / 60 % 60, time % 60);
    if millis == 0 {
        format!("{y:04}-{m:02}-{d:02}T{clock}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{clock}.{millis:03}Z")
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_offsets_and_fractions() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2026-12-01T10:00:00Z"), Ok(1_796_119_200_000));
        assert_eq!(
            parse_rfc3339("2026-12-01T12:00:00+02:00"),
            Ok(1_796_119_200_000)
        );
        assert_eq!(
            parse_rfc3339("2026-12-01t05:30:00-04:30"),
            Ok(1_796_119_200_000)
        );
        assert_eq!(
            parse_rfc3339("2026-12-01T10:00:00.25Z"),
            Ok(1_796_119_200_250)
        );
        assert_eq!(
            parse_rfc3339("2026-12-01T10:00:00.123456789z"),
            Ok(1_796_119_200_123)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Ok(-1000));
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        assert_eq!(
            parse_rfc3339("2016-12-31T23:59:60Z"),
            parse_rfc3339("2017-01-01T00:00:00Z")
        );
    }

    #[test]
    fn refuses_what_is_not_rfc3339() {
        for bad in [
            "",
            "2026-12-01",
            "2026-12-01T10:00:00",
            "2026-12-01 10:00:00Z",
            "2026-12-01T10:00Z",
            "2026-13-01T10:00:00Z",
            "2026-02-29T10:00:00Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T10:00:00+2:00",
            "2026-12-01T10:00:00+24:00",
            "2026-12-01T10:00:00.Z",
            "2026-12-01T10:00:00Zjunk",
            "２０２６-12-01T10:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            parse_rfc3339("2026-02-30T10:00:00Z"),
            Err("has day 30, but 2026-02 has 28 days".into())
        );
    }

    #[test]
    fn formats_in_utc_and_round_trips() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339(1_796_119_200_250),
            "2026-12-01T10:00:00.250Z"
        );
        assert_eq!(format_rfc3339(-1000), "1969-12-31T23:59:59Z");
        for ms in [0, 1, 951_782_400_000, 4_102_444_799_999, -86_400_000 * 400] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Ok(ms), "{ms}");
        }
    }
}
