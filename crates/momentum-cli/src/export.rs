//! `momentum export`: a movement's effective events written to a file
//! straight from the stream, for a log too large to page through HTTP.
//!
//! One pass over the movement's messages folds them with the one fold
//! (`momentum_domain::ledger`) and spills those after `--since-seq` to a
//! file beside the output; a second pass, over that local file, writes each
//! as the events export gives it (`momentum_domain::export`), now that every
//! retraction and erasure up to the end is known. The file is the same as
//! `GET /v1/movements/{movement}/events` taken whole at the same sequence,
//! as NDJSON or as the Parquet table of one row per event (written a row
//! group at a time, so a national log never has to fit in memory).

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use momentum_bus::NatsConnection;
use momentum_domain::event::Event;
use momentum_domain::export::exported;
use momentum_domain::ledger::{FoldSettings, Ledger};
use momentum_domain::query::MovementId;
use momentum_tables::events::{event_columns, event_row};
use momentum_tables::parquet::ParquetWriter;

use crate::progress::Progress;

/// How many events are folded between two drains of the fold's journal,
/// which this command never stores.
const EVENTS_PER_JOURNAL_DRAIN: u64 = 10_000;

/// Rows of a Parquet row group: the unit a reader skips or reads in
/// parallel, and what this command holds in memory at once.
const ROWS_PER_ROW_GROUP: usize = 16_384;

/// What the file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// One CloudEvent a line, as `GET /v1/movements/{movement}/events` gives them.
    Ndjson,
    /// Apache Parquet: one row per event, typed columns, lists of attendees (`format=parquet` of the same route).
    Parquet,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Reads the stream with the NATS credentials given (the admin or the projector user's: it \
    creates an ordered consumer). The file is written whole or not at all.")]
pub(crate) struct ExportArgs {
    /// The movement whose events to export.
    #[arg(long)]
    movement: String,
    /// The file's format.
    #[arg(long, value_enum, default_value = "ndjson")]
    format: ExportFormat,
    /// The file to write (replaced once it is complete).
    #[arg(long)]
    out: PathBuf,
    /// Only events stored after this stream sequence (the `next --since-seq` an earlier export printed).
    #[arg(long, default_value_t = 0)]
    since_seq: u64,
    /// Retracted events too, each with `retracted` set to its retraction's sequence.
    #[arg(long)]
    include_retracted: bool,
    /// The time zone whose calendar gives each event's local `date` (the projector's `MOMENTUM_TIMEZONE`).
    #[arg(long, env = "MOMENTUM_TIMEZONE", default_value = "Europe/London")]
    time_zone: chrono_tz::Tz,
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "MOMENTUM_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    #[command(flatten)]
    nats_connection: NatsConnection,
}

/// A file of this command's own beside `--out`, removed when the command
/// ends however it ends: the spill file (each event as its sequence, its
/// length and its bytes), and the output until it is renamed into place.
struct Scratch {
    path: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let mut name = out.file_name().map(|name| name.to_os_string()).unwrap_or_default();
    name.push(suffix);
    out.with_file_name(name)
}

pub(crate) async fn run(arguments: ExportArgs) -> anyhow::Result<()> {
    let movement = MovementId::parse(&arguments.movement)
        .map_err(|error| anyhow::anyhow!("--movement {:?}: {error}", arguments.movement))?;
    let mut reader = momentum_bus::open_movement_log(
        &arguments.nats_url,
        &arguments.nats_connection,
        "momentum-export",
        movement.as_str(),
    )
    .await?;
    let through = reader.through();
    let started = Instant::now();

    // Pass one: fold every event of the movement; spill those after --since-seq.
    let progress = Progress::new(reader.pending(), "read");
    let spill = Scratch { path: sibling(&arguments.out, ".spill") };
    let mut spilled = BufWriter::new(
        std::fs::File::create(&spill.path).with_context(|| format!("cannot write {}", spill.path.display()))?,
    );
    let settings = FoldSettings { time_zone: arguments.time_zone };
    let mut ledger = Ledger::default();
    let (mut read, mut kept) = (0u64, 0u64);
    while let Some(stored) = reader.next().await? {
        let event = Event::from_json(&stored.payload)
            .with_context(|| format!("the event stored at sequence {} does not read", stored.seq))?;
        if event.subject != movement.as_str() {
            continue;
        }
        ledger.apply(&settings, &event, stored.seq);
        read += 1;
        if read % EVENTS_PER_JOURNAL_DRAIN == 0 {
            ledger.checkpoint();
            progress.set(read, false);
        }
        if stored.seq > arguments.since_seq {
            let length = u32::try_from(stored.payload.len()).context("an event over 4 GiB")?;
            spilled.write_all(&stored.seq.to_le_bytes())?;
            spilled.write_all(&length.to_le_bytes())?;
            spilled.write_all(&stored.payload)?;
            kept += 1;
        }
    }
    progress.set(read, true);
    progress.finish();
    spilled.flush()?;
    drop(spilled);
    let Some(folded) = ledger.movement(movement.as_str()) else {
        bail!("the stream holds no event of movement {movement:?} up to sequence {through}");
    };

    // Pass two: each spilled event as the export gives it.
    let partial = Scratch { path: sibling(&arguments.out, ".partial") };
    let out = BufWriter::new(
        std::fs::File::create(&partial.path).with_context(|| format!("cannot write {}", partial.path.display()))?,
    );
    let mut out = match arguments.format {
        ExportFormat::Ndjson => Output::Ndjson(out),
        ExportFormat::Parquet => {
            let metadata = vec![(momentum_tables::WATERMARK_KEY.to_owned(), through.to_string())];
            Output::Parquet(Box::new(ParquetWriter::new(out, event_columns(), metadata, ROWS_PER_ROW_GROUP)?))
        }
    };
    let mut spilled = BufReader::new(std::fs::File::open(&spill.path)?);
    let progress = Progress::new(kept, "written");
    let mut written = 0u64;
    let mut header = [0u8; 12];
    let mut payload = Vec::new();
    for done in 1..=kept {
        spilled.read_exact(&mut header)?;
        let seq = u64::from_le_bytes(header[..8].try_into().expect("eight bytes"));
        let length = u32::from_le_bytes(header[8..].try_into().expect("four bytes")) as usize;
        payload.resize(length, 0);
        spilled.read_exact(&mut payload)?;
        let event = Event::from_json(&payload).expect("an event that read once reads again");
        if let Some(line) = exported(folded, &settings, &event, seq, arguments.include_retracted) {
            out.write(line, settings.time_zone)?;
            written += 1;
        }
        if done % EVENTS_PER_JOURNAL_DRAIN == 0 {
            progress.set(done, false);
        }
    }
    progress.set(kept, true);
    progress.finish();
    out.finish()?;
    std::fs::rename(&partial.path, &arguments.out)
        .with_context(|| format!("cannot move {} to {}", partial.path.display(), arguments.out.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    println!("events read:    {read} (of {movement}, up to stream sequence {through})");
    println!("events written: {written} to {}", arguments.out.display());
    println!("rate:           {:.0} events read a second", read as f64 / seconds.max(1e-9));
    println!("next:           --since-seq {through}");
    Ok(())
}

/// Where pass two writes: NDJSON lines, or Parquet rows.
enum Output {
    Ndjson(BufWriter<std::fs::File>),
    /// Boxed: the writer is large, and there is one of it.
    Parquet(Box<ParquetWriter<BufWriter<std::fs::File>>>),
}

impl Output {
    fn write(&mut self, event: serde_json::Value, time_zone: chrono_tz::Tz) -> anyhow::Result<()> {
        match self {
            Output::Ndjson(out) => {
                serde_json::to_writer(&mut *out, &event)?;
                out.write_all(b"\n")?;
            }
            Output::Parquet(writer) => writer.push(event_row(event, time_zone))?,
        }
        Ok(())
    }

    /// Writes what is left and flushes the file to disk.
    fn finish(self) -> anyhow::Result<()> {
        let out = match self {
            Output::Ndjson(out) => out,
            Output::Parquet(writer) => (*writer).finish()?,
        };
        out.into_inner().map_err(|error| error.into_error())?.sync_all()?;
        Ok(())
    }
}
