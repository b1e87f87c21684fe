//! The discrete-event agenda: actions waiting for their event time.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;

/// A min-queue of `(time, action)` that pops in time order and, among equal times, in the
/// order the actions were scheduled.
///
/// The insertion sequence number is what makes the order total: a plain heap on time alone
/// would pop simultaneous actions in an order that depends on the heap's internal layout,
/// which is deterministic but fragile (it changes with any unrelated push), whereas FIFO among
/// equals is both deterministic and what a reader of the model expects.
#[derive(Debug)]
pub(crate) struct Agenda<A> {
    heap: BinaryHeap<Entry<A>>,
    next_seq: u64,
}

#[derive(Debug)]
struct Entry<A> {
    at: i64,
    seq: u64,
    action: A,
}

impl<A> PartialEq for Entry<A> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<A> Eq for Entry<A> {}

impl<A> PartialOrd for Entry<A> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<A> Ord for Entry<A> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest entry first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<A> Agenda<A> {
    pub(crate) fn with_capacity(capacity: usize) -> Agenda<A> {
        Agenda {
            heap: BinaryHeap::with_capacity(capacity),
            next_seq: 0,
        }
    }

    pub(crate) fn schedule(&mut self, at: i64, action: A) {
        self.heap.push(Entry {
            at,
            seq: self.next_seq,
            action,
        });
        self.next_seq += 1;
    }

    /// The earliest action due at or before `until`, with its time.
    pub(crate) fn pop_due(&mut self, until: i64) -> Option<(i64, A)> {
        let top = self.heap.peek_mut()?;
        if top.at > until {
            return None;
        }
        let Entry { at, action, .. } = PeekMut::pop(top);
        Some((at, action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_fifo_and_stops_at_the_limit() {
        let mut agenda = Agenda::with_capacity(4);
        agenda.schedule(20, 'c');
        agenda.schedule(10, 'a');
        agenda.schedule(20, 'd');
        agenda.schedule(10, 'b');
        agenda.schedule(30, 'e');
        let mut popped = Vec::new();
        while let Some((at, action)) = agenda.pop_due(20) {
            popped.push((at, action));
        }
        assert_eq!(popped, [(10, 'a'), (10, 'b'), (20, 'c'), (20, 'd')]);
        assert_eq!(agenda.pop_due(29), None);
        assert_eq!(agenda.pop_due(30), Some((30, 'e')));
    }
}
