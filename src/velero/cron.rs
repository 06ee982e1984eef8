//! Velero's cron dialect: robfig/cron v3's standard parser, as Velero 1.15+ uses it.
//!
//! Five fields (minute, hour, day of month, month, day of week; day of week 0-6, `7` is
//! refused), the `@yearly`…`@hourly` descriptors, `@every <Go duration>`, and an optional
//! `CRON_TZ=<zone>` or `TZ=<zone>` prefix naming an IANA zone.

use std::str::FromStr;

use super::duration::parse_go_duration;

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
    },
    Field {
        name: "day of week",
        min: 0,
        max: 6,
        names: DAYS,
    },
];

/// Checks `spec` the way Velero's schedule controller does; the error reads like
/// robfig's own.
pub fn check_cron(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("a schedule needs a non-empty cron expression".to_string());
    }
    let mut spec = spec;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let Some(space) = spec.find(' ') else {
            return Err(
                "a time zone prefix must be followed by a space and the schedule".to_string(),
            );
        };
        let equals = spec.find('=').unwrap_or(0);
        let zone = &spec[equals + 1..space];
        if zone != "Local" && chrono_tz::Tz::from_str(zone).is_err() {
            return Err(format!("provided bad location {zone}: unknown time zone"));
        }
        spec = spec[space..].trim();
    }
    if let Some(descriptor) = spec.strip_prefix('@') {
        return check_descriptor(descriptor, spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for (text, field) in fields.iter().zip(FIELDS.iter()) {
        for range in text.split(',') {
            check_range(range, field).map_err(|error| format!("{} field: {error}", field.name))?;
        }
    }
    Ok(())
}

fn check_descriptor(descriptor: &str, spec: &str) -> Result<(), String> {
    match descriptor {
        "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => Ok(()),
        _ => match descriptor.strip_prefix("every ") {
            Some(duration) => parse_go_duration(duration)
                .map(|_| ())
                .map_err(|error| format!("failed to parse duration {spec}: {error}")),
            None => Err(format!("unrecognized descriptor: {spec}")),
        },
    }
}

fn check_range(range: &str, field: &Field) -> Result<(), String> {
    let (bounds, step) = match range.split('/').collect::<Vec<_>>()[..] {
        [bounds] => (bounds, None),
        [bounds, step] => (bounds, Some(step)),
        _ => return Err(format!("too many slashes: {range}")),
    };
    let (start, end) = if bounds == "*" || bounds == "?" {
        (field.min, field.max)
    } else {
        match bounds.split('-').collect::<Vec<_>>()[..] {
            [single] => {
                let value = parse_value(single, field)?;
                // `n/step` means n through the maximum.
                (value, if step.is_some() { field.max } else { value })
            }
            [low, high] => (parse_value(low, field)?, parse_value(high, field)?),
            _ => return Err(format!("too many hyphens: {range}")),
        }
    };
    if let Some(step) = step {
        let step = parse_int(step)?;
        if step == 0 {
            return Err(format!(
                "step of range should be a positive number: {range}"
            ));
        }
    }
    if start < field.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {range}",
            field.min
        ));
    }
    if end > field.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {range}",
            field.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {range}"
        ));
    }
    Ok(())
}

/// The values a valid field matches, as a bit set, and whether it was `*`/`?`.
fn field_bits(text: &str, field: &Field) -> Option<(u64, bool)> {
    let mut bits = 0u64;
    let mut star = false;
    for range in text.split(',') {
        let (bounds, step) = match range.split_once('/') {
            Some((bounds, step)) => (bounds, parse_int(step).ok()?),
            None => (range, 1),
        };
        let (start, end) = if bounds == "*" || bounds == "?" {
            star |= step == 1;
            (field.min, field.max)
        } else {
            match bounds.split_once('-') {
                Some((low, high)) => (
                    parse_value(low, field).ok()?,
                    parse_value(high, field).ok()?,
                ),
                None => {
                    let value = parse_value(bounds, field).ok()?;
                    (
                        value,
                        if range.contains('/') {
                            field.max
                        } else {
                            value
                        },
                    )
                }
            }
        };
        let mut value = start;
        while value <= end {
            bits |= 1 << value;
            value += step.max(1);
        }
    }
    Some((bits, star))
}

/// Why a schedule Velero's parser accepts would still never start a backup: an
/// `@every` interval that is not above zero, or a date that never comes (`0 0 31 2 *`).
/// Judged from a fixed date, since validation never reads the clock; a date that
/// exists comes within five years of any date.
pub fn never_fires(spec: &str) -> Option<String> {
    let interval = spec
        .split_whitespace()
        .skip_while(|part| part.starts_with("TZ=") || part.starts_with("CRON_TZ="))
        .collect::<Vec<_>>();
    if let ["@every", duration] = interval.as_slice() {
        return match parse_go_duration(duration) {
            Ok(nanos) if nanos <= 0 => Some(format!(
                "an @every interval must be longer than zero, not {duration}"
            )),
            _ => None,
        };
    }
    // Only a day of the month can be a date that never comes: with every day of the
    // month allowed (a day of the week, when restricted, comes every week), or a
    // descriptor such as @daily, the schedule fires, and the search below is not needed.
    match interval.as_slice() {
        [descriptor] if descriptor.starts_with('@') => return None,
        [_, _, "*" | "?", _, _] => return None,
        _ => {}
    }
    let reference = chrono::DateTime::<chrono::Utc>::from_timestamp(1_735_689_600, 0)?;
    next_run(spec, reference)
        .is_none()
        .then(|| format!("{spec:?} matches no date: it never fires"))
}

/// When a valid schedule next fires after `after` (robfig's rules: day of month and
/// day of week both restricted means either matches). `@every` counts from `after`.
pub fn next_run(
    spec: &str,
    after: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{Datelike, TimeZone, Timelike};
    check_cron(spec).ok()?;
    let mut spec = spec.trim();
    let mut zone = chrono_tz::UTC;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let (prefix, rest) = spec.split_once(' ')?;
        let name = prefix.split_once('=')?.1;
        zone = chrono_tz::Tz::from_str(name).unwrap_or(chrono_tz::UTC);
        spec = rest.trim();
    }
    let expanded = match spec {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other => match other.strip_prefix("@every ") {
            Some(duration) => {
                let nanos = parse_go_duration(duration).ok()?;
                let step = chrono::Duration::nanoseconds(i64::try_from(nanos).ok()?);
                return after.checked_add_signed(step);
            }
            None => other,
        },
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    let parsed: Vec<(u64, bool)> = fields
        .iter()
        .zip(FIELDS.iter())
        .map(|(text, field)| field_bits(text, field))
        .collect::<Option<_>>()?;
    let [minute, hour, dom, month, dow] = parsed.as_slice() else {
        return None;
    };
    let local = after.with_timezone(&zone);
    let mut candidate = local.with_second(0)?.with_nanosecond(0)? + chrono::Duration::minutes(1);
    // Five years of minutes bounds the search (a Feb 29 schedule fires within four).
    for _ in 0..(5 * 366 * 24 * 60) {
        let day_matches = {
            let dom_hit = dom.0 & (1 << candidate.day()) != 0;
            let dow_hit = dow.0 & (1 << candidate.weekday().num_days_from_sunday()) != 0;
            if dom.1 || dow.1 {
                dom_hit && dow_hit
            } else {
                dom_hit || dow_hit
            }
        };
        if month.0 & (1 << candidate.month()) == 0 || !day_matches {
            let next_day = candidate.date_naive().succ_opt()?.and_hms_opt(0, 0, 0)?;
            candidate = zone.from_local_datetime(&next_day).earliest()?;
            continue;
        }
        if hour.0 & (1 << candidate.hour()) == 0 {
            candidate = candidate.with_minute(0)? + chrono::Duration::hours(1);
            continue;
        }
        if minute.0 & (1 << candidate.minute()) != 0 {
            return Some(candidate.with_timezone(&chrono::Utc));
        }
        candidate += chrono::Duration::minutes(1);
    }
    None
}

fn parse_value(text: &str, field: &Field) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(index) = field.names.iter().position(|name| *name == lower) {
        return Ok(index as u32 + field.min);
    }
    parse_int(text)
}

fn parse_int(text: &str) -> Result<u32, String> {
    if text.starts_with('-') {
        return Err(format!("negative number ({text}) not allowed"));
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("failed to parse int from {text}"));
    }
    text.parse()
        .map_err(|_| format!("failed to parse int from {text}"))
}

#[cfg(test)]
mod tests {
    use super::{check_cron, never_fires, next_run};

    /// The shortcut for schedules whose day of the month is unrestricted agrees with
    /// the search it skips, over every field shape it covers.
    #[test]
    fn the_never_fires_shortcut_agrees_with_the_search() {
        let reference =
            chrono::DateTime::<chrono::Utc>::from_timestamp(1_735_689_600, 0).expect("a date");
        let mut checked = 0;
        for minute in ["*/7"] {
            for hour in ["1-3"] {
                for dom in ["*", "?", "31", "30", "29", "1-5"] {
                    for month in ["*", "FEB", "4,6"] {
                        for dow in ["*", "?", "1-5", "SAT"] {
                            let spec = format!("{minute} {hour} {dom} {month} {dow}");
                            if check_cron(&spec).is_err() {
                                continue;
                            }
                            let searched = next_run(&spec, reference).is_none();
                            assert_eq!(never_fires(&spec).is_some(), searched, "{spec}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 50, "{checked}");
        assert!(never_fires("0 0 31 2 *").is_some());
        assert!(never_fires("@daily").is_none() && never_fires("TZ=UTC 0 0 * 2 *").is_none());
    }

    #[test]
    fn next_runs() {
        let at = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let after = at("2026-11-29T01:30:00Z"); // a Sunday
        for (spec, expected) in [
            ("0 1 * * *", "2026-11-30T01:00:00Z"),
            ("*/15 * * * *", "2026-11-29T01:45:00Z"),
            ("0 3 * * SUN", "2026-11-29T03:00:00Z"),
            ("0 0 1 * *", "2026-12-01T00:00:00Z"),
            ("@daily", "2026-11-30T00:00:00Z"),
            ("@every 6h", "2026-11-29T07:30:00Z"),
            ("CRON_TZ=Europe/Amsterdam 0 2 * * *", "2026-11-30T01:00:00Z"),
            // Day of month and day of week both restricted: either one.
            ("0 0 13 * 5", "2026-12-04T00:00:00Z"),
        ] {
            assert_eq!(next_run(spec, after), Some(at(expected)), "{spec}");
        }
        assert_eq!(next_run("not cron", after), None);
    }

    #[test]
    fn accepts_velero_schedules() {
        for ok in [
            "0 1 * * *",
            "*/15 * * * *",
            "0 0 1-15/2 jan-jun mon-fri",
            "0 3 ? * SUN",
            "5 4 * * 0,6",
            "30 2 * * 1/2",
            "@daily",
            "@midnight",
            "@every 6h",
            "@every 1h30m",
            "CRON_TZ=Europe/Berlin 0 1 * * *",
            "TZ=America/New_York @daily",
            "TZ=UTC 0 0 * * *",
        ] {
            assert_eq!(check_cron(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_what_robfig_refuses() {
        for (bad, why) in [
            ("", "non-empty"),
            ("0 1 * *", "expected exactly 5 fields, found 4"),
            ("0 0 1 * * *", "expected exactly 5 fields, found 6"),
            ("0 1 * * 7", "above maximum (6)"),
            ("60 * * * *", "above maximum (59)"),
            ("0 0 0 * *", "below minimum (1)"),
            ("5-1 * * * *", "beyond end"),
            ("*/0 * * * *", "positive"),
            ("1-2-3 * * * *", "too many hyphens"),
            ("1/2/3 * * * *", "too many slashes"),
            ("x * * * *", "failed to parse int"),
            ("1,,2 * * * *", "failed to parse int"),
            ("@fortnightly", "unrecognized descriptor"),
            ("@every 1d", "failed to parse duration"),
            ("CRON_TZ=Mars/Olympus 0 1 * * *", "bad location"),
            ("CRON_TZ=UTC", "followed by a space"),
        ] {
            let error = check_cron(bad).expect_err(bad);
            assert!(error.contains(why), "{bad}: {error}");
        }
    }
}

/// The schedule `spec` moved later by `by` (whole minutes), exactly: the minute and
/// hour fields shifted, wrapping into the next hour or day where the other fields allow
/// it. `Err` says why a spec cannot be moved exactly: a list, range or step in the
/// minute or hour field, a day that would have to move with restricted day fields, an
/// `@every` interval, or a shift that is not whole minutes.
pub fn shifted(spec: &str, by: std::time::Duration) -> Result<String, String> {
    if !by.as_secs().is_multiple_of(60) || by.subsec_nanos() != 0 {
        return Err("a stagger must be whole minutes: cron has no seconds".to_string());
    }
    let minutes = by.as_secs() / 60;
    let spec = spec.trim();
    let (prefix, body) = match spec.split_once(' ') {
        Some((first, rest)) if first.starts_with("TZ=") || first.starts_with("CRON_TZ=") => {
            (format!("{first} "), rest.trim())
        }
        _ => (String::new(), spec),
    };
    let body = match body {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other if other.starts_with("@every") => {
            return Err("an @every schedule has no time of day to move; stagger needs a 5-field cron or a descriptor such as @daily".to_string());
        }
        other => other,
    };
    let fields: Vec<&str> = body.split_whitespace().collect();
    let [minute, hour, day_of_month, month, day_of_week] = fields.as_slice() else {
        return Err(format!("expected 5 fields in {body:?}"));
    };
    let single = |field: &str, what: &str| {
        field.parse::<u64>().map_err(|_| {
            format!("the {what} field {field:?} is not a single value, so the copies cannot be moved exactly")
        })
    };
    let minute = single(minute, "minute")?;
    let total = minute + minutes;
    let (new_minute, carry_hours) = (total % 60, total / 60);
    if carry_hours == 0 {
        return Ok(format!(
            "{prefix}{new_minute} {hour} {day_of_month} {month} {day_of_week}"
        ));
    }
    if *hour == "*" {
        // Every hour: the shifted minute of the same hour-grid is the same schedule
        // moved, as long as the move is less than an hour.
        if minutes >= 60 {
            return Err("the hour field is `*` (every hour): a stagger of an hour or more would overlap the next run".to_string());
        }
        // The day's last run moves past midnight: exact only when every day runs.
        if [*day_of_month, *month, *day_of_week]
            .iter()
            .any(|f| *f != "*")
        {
            return Err(format!(
                "the 23:{minute:02} run would move past midnight into a day the day fields ({day_of_month} {month} {day_of_week}) may not allow, so its copy would not run; stagger by less than {} minutes",
                60 - minute
            ));
        }
        return Ok(format!(
            "{prefix}{new_minute} * {day_of_month} {month} {day_of_week}"
        ));
    }
    let hour = single(hour, "hour")?;
    let total_hours = hour + carry_hours;
    let (new_hour, carry_days) = (total_hours % 24, total_hours / 24);
    if carry_days == 0 {
        return Ok(format!(
            "{prefix}{new_minute} {new_hour} {day_of_month} {month} {day_of_week}"
        ));
    }
    if carry_days == 1
        && [*day_of_month, *month, *day_of_week]
            .iter()
            .all(|f| *f == "*")
    {
        return Ok(format!("{prefix}{new_minute} {new_hour} * * *"));
    }
    Err(
        "the copies would move into the next day, and the day fields would have to move with them"
            .to_string(),
    )
}

/// The shortest time between two runs of a valid schedule, judged over its next 64 runs
/// from a fixed date (validation never reads the clock); `None` when it never fires.
pub fn shortest_period(spec: &str) -> Option<chrono::Duration> {
    let mut at = chrono::DateTime::<chrono::Utc>::from_timestamp(1_735_689_600, 0)?;
    let mut previous = next_run(spec, at)?;
    let mut shortest: Option<chrono::Duration> = None;
    for _ in 0..64 {
        at = previous;
        let next = next_run(spec, at)?;
        let gap = next - previous;
        shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
        previous = next;
    }
    shortest
}

/// The longest time between two runs of `spec` over about eight weeks of runs (a
/// weekday cron's weekend, a monthly cron's longest month): how old the newest backup
/// of a schedule on it can get. `None` when it never runs.
pub fn longest_gap(spec: &str) -> Option<chrono::Duration> {
    let start = chrono::DateTime::<chrono::Utc>::from_timestamp(1_735_689_600, 0)?;
    let horizon = start + chrono::Duration::days(400);
    let mut previous = next_run(spec, start)?;
    let mut longest: Option<chrono::Duration> = None;
    for _ in 0..4_000 {
        let Some(next) = next_run(spec, previous) else {
            break;
        };
        let gap = next - previous;
        longest = Some(longest.map_or(gap, |l| l.max(gap)));
        previous = next;
        if previous > horizon
            || (previous - start > chrono::Duration::days(56) && gap < chrono::Duration::days(1))
        {
            break;
        }
    }
    longest
}

#[cfg(test)]
mod shift_tests {
    use super::shifted;
    use std::time::Duration;

    fn minutes(m: u64) -> Duration {
        Duration::from_secs(m * 60)
    }

    #[test]
    fn shifts_across_hour_and_day_boundaries_or_says_why_not() {
        let table: &[(&str, u64, Result<&str, &str>)] = &[
            ("0 1 * * *", 0, Ok("0 1 * * *")),
            ("0 1 * * *", 20, Ok("20 1 * * *")),
            ("0 1 * * *", 40, Ok("40 1 * * *")),
            ("50 1 * * *", 20, Ok("10 2 * * *")),
            ("30 23 * * *", 45, Ok("15 0 * * *")),
            ("30 23 * * 1", 45, Err("next day")),
            ("30 22 * * 1", 45, Ok("15 23 * * 1")),
            ("15 * * * *", 30, Ok("45 * * * *")),
            ("45 * * * *", 30, Ok("15 * * * *")),
            ("45 * * * *", 60, Err("overlap")),
            ("45 * * * 1-5", 30, Err("past midnight")),
            ("15 * * * 1-5", 30, Ok("45 * * * 1-5")),
            ("@daily", 90, Ok("30 1 * * *")),
            (
                "CRON_TZ=Europe/Berlin 0 2 * * *",
                30,
                Ok("CRON_TZ=Europe/Berlin 30 2 * * *"),
            ),
            ("0,30 1 * * *", 10, Err("minute field")),
            ("0 1-3 * * *", 70, Err("hour field")),
            ("*/5 * * * *", 1, Err("minute field")),
            ("@every 6h", 30, Err("@every")),
        ];
        for (spec, by, expected) in table {
            let got = shifted(spec, minutes(*by));
            match (expected, &got) {
                (Ok(want), Ok(have)) => assert_eq!(have, want, "{spec} + {by}m"),
                (Err(why), Err(have)) => assert!(have.contains(why), "{spec} + {by}m: {have}"),
                _ => panic!("{spec} + {by}m: expected {expected:?}, got {got:?}"),
            }
        }
        assert!(
            shifted("0 1 * * *", Duration::from_secs(90))
                .unwrap_err()
                .contains("whole minutes")
        );
    }

    #[test]
    fn the_longest_gap_is_the_worst_wait_for_a_backup() {
        use chrono::Duration as Span;
        assert_eq!(super::longest_gap("0 1 * * *"), Some(Span::hours(24)));
        assert_eq!(super::longest_gap("0 1 * * 1-5"), Some(Span::hours(72)));
        assert_eq!(super::longest_gap("@every 6h"), Some(Span::hours(6)));
        assert_eq!(super::longest_gap("0 3 1 * *"), Some(Span::days(31)));
        assert_eq!(super::longest_gap("*/15 * * * *"), Some(Span::minutes(15)));
    }

    /// The family, not the instances: for generated crons and staggers, a shifted cron
    /// either runs exactly at every original run plus the stagger, over four weeks, or
    /// is refused.
    #[test]
    fn a_shifted_cron_runs_exactly_the_original_runs_moved_or_is_refused() {
        use chrono::{Duration as Span, TimeZone, Utc};
        let mut state = 0x5eed_u64;
        let mut next = |bound: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % bound
        };
        let start = Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap();
        let end = start + Span::days(28);
        let runs = |spec: &str, from, to| {
            let mut out = Vec::new();
            let mut at = super::next_run(spec, from - Span::minutes(1));
            while let Some(t) = at {
                if t >= to {
                    break;
                }
                if t >= from {
                    out.push(t);
                }
                at = super::next_run(spec, t);
            }
            out
        };
        for _ in 0..300 {
            let minute = next(60);
            let hour = if next(2) == 0 {
                "*".to_string()
            } else {
                next(24).to_string()
            };
            let day_of_month = ["*", "1", "15", "1-10"][next(4) as usize];
            let day_of_week = ["*", "*", "1-5", "0", "6", "1,3"][next(6) as usize];
            let spec = format!("{minute} {hour} {day_of_month} * {day_of_week}");
            let by = 1 + next(2 * 24 * 60);
            let Ok(moved) = shifted(&spec, minutes(by)) else {
                continue;
            };
            let shift = Span::minutes(by as i64);
            let expected: Vec<_> = runs(&spec, start, end)
                .into_iter()
                .map(|t| t + shift)
                .collect();
            let got = runs(&moved, start + shift, end + shift);
            assert_eq!(got, expected, "{spec} moved by {by} minutes became {moved}");
        }
    }
}
