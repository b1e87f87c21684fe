//! Conversion throughput and memory, no Kafka, one core:
//!
//! 1. the NYC 2013 sample as it is (10,004 rows, one hour);
//! 2. 6 and then 12 hours built from it: the sample repeated, repetition `k` moved `k` hours
//!    later (same taxis, so they work all along), generated line by line while it is read.
//!    Memory holds the taxis and the rows of the lookahead window (3 hours of drop-offs by
//!    default), so the peak RSS after 12 hours should be that after 6: it does not grow with
//!    the file.
//!
//! Run with `cargo bench -p surgeflow-replay`. The sample is found through
//! `SURGEFLOW_DATA_DIR` (default `../shared/data`); without it the bench says so and stops.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read};
use std::time::Instant;

use surgeflow_replay::{Replay, ReplayConfig};
use surgeflow_testkit::{ProcessUsage, data_file};

/// The sample's lines, repeated with every time moved `k` hours later in repetition `k`.
struct Day {
    lines: Vec<String>,
    repetitions: usize,
    next: usize,
    buffer: Vec<u8>,
    position: usize,
}

impl Day {
    fn new(text: &str, repetitions: usize) -> Self {
        let lines: Vec<String> = text.lines().map(String::from).collect();
        assert!(
            lines.iter().all(|l| l.matches(" 00:").count() == 2),
            "the sample's times are all between 00:00 and 00:59"
        );
        Day {
            lines,
            repetitions,
            next: 0,
            buffer: Vec::new(),
            position: 0,
        }
    }
}

impl Read for Day {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Day {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.position == self.buffer.len() && self.next < self.lines.len() * self.repetitions
        {
            let (k, i) = (self.next / self.lines.len(), self.next % self.lines.len());
            self.buffer.clear();
            self.position = 0;
            let line = self.lines[i].replace(" 00:", &format!(" {k:02}:"));
            self.buffer.extend_from_slice(line.as_bytes());
            self.buffer.push(b'\n');
            self.next += 1;
        }
        Ok(&self.buffer[self.position..])
    }

    fn consume(&mut self, n: usize) {
        self.position += n;
    }
}

fn run(name: &str, input: impl BufRead) -> Result<(), Box<dyn std::error::Error>> {
    let began = Instant::now();
    let mut replay = Replay::new(input, ReplayConfig::default())?;
    let mut events = 0u64;
    while let Some(event) = replay.next_event()? {
        black_box(&event);
        events += 1;
    }
    let elapsed = began.elapsed().as_secs_f64();
    let stats = replay.stats();
    let usage = ProcessUsage::of(std::process::id());
    println!(
        "{name}: {} rows, {} taxis -> {events} events in {elapsed:.2} s: {:.0} events/s, peak RSS so far {:.1} MiB",
        stats.rows,
        stats.drivers,
        events as f64 / elapsed,
        usage.peak_rss as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(path) = data_file("nyc-taxi-2013/sorted_data.csv", "NYC taxi sample") else {
        return Ok(());
    };
    run("sample", BufReader::new(std::fs::File::open(&path)?))?;
    let text = std::fs::read_to_string(&path)?;
    run("sample x 6 hours", Day::new(&text, 6))?;
    run("sample x 12 hours", Day::new(&text, 12))?;
    Ok(())
}
