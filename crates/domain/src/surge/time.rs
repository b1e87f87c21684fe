//! Event time of one partition: the [`Watermark`] that decides which records are on time
//! and how far the event clock has certainly got.

/// How a record's event time relates to the partition's clocks; see [`Watermark::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arrival {
    /// At or after the watermark and not too far ahead of the processing clock: applied.
    OnTime,
    /// Before the watermark: the ticks it belongs to may be computed already, so applying
    /// it now would make the outputs depend on arrival order. Counted and dropped.
    Late,
    /// More than `max_future_ms` ahead of the processing clock: a device clock gone wrong.
    /// Counted and dropped, and never moves the watermark (one bad clock would otherwise
    /// make every honest record late).
    Future,
}

/// How many records [`Watermark::observe`] put in each class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArrivalCounts {
    /// Records classified [`Arrival::OnTime`].
    pub on_time: u64,
    /// Records classified [`Arrival::Late`].
    pub late: u64,
    /// Records classified [`Arrival::Future`].
    pub future: u64,
}

/// The event-time clock of one partition.
///
/// `watermark = max_event_time_seen − allowed_lateness`, and it never moves back: the
/// promise that no record stamped before it will be applied any more, so everything up to it
/// can be computed once and for all. The lateness allowance trades latency for tolerance of
/// out-of-order delivery.
///
/// When a partition goes quiet, the event clock is extrapolated at real speed (see
/// [`on_idle`](Self::on_idle)) instead of jumping to the processing clock, so prices keep
/// updating in quiet hours and a replay of old data at real speed still works.
#[derive(Debug, Clone)]
pub struct Watermark {
    allowed_lateness_ms: i64,
    idle_advance_ms: i64,
    max_future_ms: i64,
    /// Largest event time of an on-time record.
    max_event_ms: Option<i64>,
    /// Latest processing time at which an on-time record arrived.
    last_arrival_ms: i64,
    current: Option<i64>,
    counts: ArrivalCounts,
}

impl Watermark {
    /// A watermark with no record seen yet (so none is late).
    ///
    /// Negative durations are treated as 0; [`SurgeConfig`](super::SurgeConfig) rejects them.
    #[must_use]
    pub fn new(allowed_lateness_ms: i64, idle_advance_ms: i64, max_future_ms: i64) -> Self {
        Self {
            allowed_lateness_ms: allowed_lateness_ms.max(0),
            idle_advance_ms: idle_advance_ms.max(0),
            max_future_ms: max_future_ms.max(0),
            max_event_ms: None,
            last_arrival_ms: i64::MIN,
            current: None,
            counts: ArrivalCounts::default(),
        }
    }

    /// Classifies a record stamped `event_time_ms` arriving at processing time `now_ms`,
    /// counts it, and lets an on-time record advance the watermark.
    ///
    /// The future check comes first: a record far ahead of the processing clock is refused
    /// whatever the watermark.
    pub fn observe(&mut self, event_time_ms: i64, now_ms: i64) -> Arrival {
        if event_time_ms > now_ms.saturating_add(self.max_future_ms) {
            self.counts.future += 1;
            return Arrival::Future;
        }
        if self
            .current
            .is_some_and(|watermark| event_time_ms < watermark)
        {
            self.counts.late += 1;
            return Arrival::Late;
        }
        self.counts.on_time += 1;
        let max_event = self
            .max_event_ms
            .map_or(event_time_ms, |max| max.max(event_time_ms));
        self.max_event_ms = Some(max_event);
        self.last_arrival_ms = self.last_arrival_ms.max(now_ms);
        self.raise(max_event.saturating_sub(self.allowed_lateness_ms));
        Arrival::OnTime
    }

    /// Extrapolates the event clock if no on-time record has arrived for `idle_advance_ms`
    /// of processing time: the watermark may advance to
    /// `max_event_time + (now_ms − last_arrival) − allowed_lateness`. Returns whether it
    /// moved.
    ///
    /// Extrapolating from the last record rather than jumping to `now_ms` keeps a replay of
    /// old data (whose event times are far behind the processing clock) from making all of
    /// its remaining records late, while a live partition still closes its windows in
    /// quiet hours.
    pub fn on_idle(&mut self, now_ms: i64) -> bool {
        let Some(max_event) = self.max_event_ms else {
            return false;
        };
        let idle = now_ms.saturating_sub(self.last_arrival_ms);
        if idle < self.idle_advance_ms {
            return false;
        }
        let before = self.current;
        self.raise(
            max_event
                .saturating_add(idle)
                .saturating_sub(self.allowed_lateness_ms),
        );
        self.current != before
    }

    /// Moves the watermark to `watermark_ms` unless it is already further; never back.
    /// Used to restore a watermark that had been extrapolated before a restart.
    pub fn raise(&mut self, watermark_ms: i64) {
        self.current = Some(
            self.current
                .map_or(watermark_ms, |current| current.max(watermark_ms)),
        );
    }

    /// The watermark, `None` before the first on-time record (or [`raise`](Self::raise)).
    #[must_use]
    pub fn current(&self) -> Option<i64> {
        self.current
    }

    /// The largest event time of an on-time record so far.
    #[must_use]
    pub fn max_event_time(&self) -> Option<i64> {
        self.max_event_ms
    }

    /// How many records were classified into each class.
    #[must_use]
    pub fn counts(&self) -> ArrivalCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_against_watermark_and_processing_clock() {
        let mut w = Watermark::new(10_000, 5_000, 30_000);
        assert_eq!(w.current(), None);
        assert_eq!(w.observe(100_000, 100_000), Arrival::OnTime);
        assert_eq!(w.current(), Some(90_000));
        // Out of order but within the lateness: applied, and the watermark stays.
        assert_eq!(w.observe(95_000, 100_100), Arrival::OnTime);
        assert_eq!(w.current(), Some(90_000));
        // Exactly at the watermark is on time; one millisecond before is late.
        assert_eq!(w.observe(90_000, 100_200), Arrival::OnTime);
        assert_eq!(w.observe(89_999, 100_300), Arrival::Late);
        // Far ahead of the processing clock: refused, watermark untouched.
        assert_eq!(w.observe(140_001, 110_000), Arrival::Future);
        assert_eq!(w.observe(140_000, 110_000), Arrival::OnTime);
        assert_eq!(w.current(), Some(130_000));
        assert_eq!(
            w.counts(),
            ArrivalCounts {
                on_time: 4,
                late: 1,
                future: 1
            }
        );
    }

    #[test]
    fn idle_extrapolates_from_the_last_record_not_the_wall_clock() {
        let mut w = Watermark::new(10_000, 5_000, 30_000);
        assert!(
            !w.on_idle(1_000_000),
            "nothing seen: nothing to extrapolate"
        );
        // A replay of data from an hour ago, arriving now.
        w.observe(1_000_000, 4_600_000);
        assert!(!w.on_idle(4_604_999), "not idle long enough");
        assert_eq!(w.current(), Some(990_000));
        assert!(w.on_idle(4_605_000));
        assert_eq!(w.current(), Some(995_000));
        assert!(w.on_idle(4_620_000));
        assert_eq!(w.current(), Some(1_010_000));
        // A record behind the extrapolated clock is now late; one ahead moves it on.
        assert_eq!(w.observe(1_009_000, 4_620_001), Arrival::Late);
        assert_eq!(w.observe(1_030_000, 4_620_002), Arrival::OnTime);
        assert_eq!(w.current(), Some(1_020_000));
        // An earlier processing time never pulls the extrapolation back.
        assert!(!w.on_idle(4_600_000));
        assert_eq!(w.current(), Some(1_020_000));
    }

    #[test]
    fn raise_never_lowers() {
        let mut w = Watermark::new(0, 1, 0);
        w.raise(50);
        w.raise(40);
        assert_eq!(w.current(), Some(50));
        assert_eq!(w.observe(49, 100), Arrival::Late);
        assert_eq!(w.max_event_time(), None);
    }

    #[test]
    fn extreme_times_saturate_instead_of_panicking() {
        let mut w = Watermark::new(10_000, 5_000, 30_000);
        assert_eq!(w.observe(i64::MIN, i64::MIN), Arrival::OnTime);
        assert_eq!(w.current(), Some(i64::MIN));
        assert_eq!(w.observe(i64::MAX, i64::MAX), Arrival::OnTime);
        assert!(!w.on_idle(i64::MAX));
        assert_eq!(w.current(), Some(i64::MAX - 10_000));
    }
}
