//! Ids and per-trip choices derived from the data, deterministically.
//!
//! Everything comes from 64-bit FNV-1a, a published, trivially reimplemented hash: the same
//! line always gives the same trip id and offer timing, on any platform. The inputs are already
//! opaque (the FOIL release hashed the medallions and licences), and they stay opaque: nothing
//! here tries to recover them.

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The driver id of a taxi: `taxi-` and the 16 hex digits of FNV-1a of its medallion.
pub fn driver_id(medallion: &str) -> String {
    format!("taxi-{:016x}", fnv1a64(medallion.as_bytes()))
}

/// When a taxi's pings fall: at every time `t` (file time, UTC ms) with
/// `t mod interval = phase`, `phase = FNV-1a(medallion) mod interval`, so that taxis ping
/// at spread-out instants rather than all at once.
pub fn ping_phase_ms(medallion: &str, interval_ms: i64) -> i64 {
    (fnv1a64(medallion.as_bytes()) % interval_ms.max(1) as u64) as i64
}

/// What a line (its bytes, without the line ending) determines on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineHash(pub u64);

impl LineHash {
    /// Hashes a line.
    pub fn of(line: &[u8]) -> Self {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        LineHash(fnv1a64(line))
    }

    /// `trip-` and 16 hex digits: identical lines are the same trip.
    pub fn trip_id(self) -> String {
        format!("trip-{:016x}", self.0)
    }

    /// `rider-` and the same digits: every trip has a rider of its own.
    pub fn rider_id(self) -> String {
        format!("rider-{:016x}", self.0)
    }

    /// How long after the request the taxi accepts the offer: 2 to 10 s, `2000 + h mod 8001`
    /// milliseconds.
    pub fn offer_delay_ms(self) -> i64 {
        2_000 + (self.0 % 8_001) as i64
    }

    /// How long after accepting the rider boards: 5 to 30 s, `5000 + (h >> 32) mod 25001`
    /// milliseconds.
    pub fn boarding_ms(self) -> i64 {
        5_000 + ((self.0 >> 32) % 25_001) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn derived_values_stay_in_their_ranges() {
        for i in 0..10_000u32 {
            let h = LineHash::of(format!("line {i}").as_bytes());
            assert!((2_000..=10_000).contains(&h.offer_delay_ms()));
            assert!((5_000..=30_000).contains(&h.boarding_ms()));
            assert!((0..4_000).contains(&ping_phase_ms(&format!("m{i}"), 4_000)));
        }
        assert_eq!(LineHash::of(b"x\r"), LineHash::of(b"x"));
        assert_eq!(driver_id("07290D3599E7A0D62097A346EFCC1FB5").len(), 21);
        assert_eq!(LineHash(0xab).trip_id(), "trip-00000000000000ab");
    }
}
