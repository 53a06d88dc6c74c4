//! UTC calendar date and time from Unix seconds (proleptic Gregorian), the
//! one conversion the mapfile writer, `md examine` and `vmfs ls` share.

/// A UTC date and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Civil {
    /// Seconds since 1970-01-01 00:00:00 UTC to a calendar date; days to
    /// date by Howard Hinnant's published civil-from-days algorithm.
    pub fn from_unix(secs: u64) -> Civil {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Civil {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// `YYYY-MM-DD HH:MM`.
    pub fn to_minutes(self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute
        )
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(secs: u64) -> String {
    let c = Civil::from_unix(secs);
    format!("{}:{:02} UTC", c.to_minutes(), c.second)
}

/// The current time as [`format_utc`] writes it.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(format_utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
        assert_eq!(
            Civil::from_unix(1_700_000_000).to_minutes(),
            "2023-11-14 22:13"
        );
    }

    /// Every day from 1970 to 2400 follows the previous one.
    #[test]
    fn days_are_consecutive() {
        let mut prev = Civil::from_unix(0);
        for d in 1..(430 * 366) {
            let c = Civil::from_unix(d * 86_400);
            let next_day = c.day == prev.day + 1 && c.month == prev.month && c.year == prev.year;
            let next_month = c.day == 1 && c.month == prev.month + 1 && c.year == prev.year;
            let next_year =
                c.day == 1 && c.month == 1 && prev.month == 12 && c.year == prev.year + 1;
            assert!(next_day || next_month || next_year, "{prev:?} -> {c:?}");
            prev = c;
        }
    }
}
