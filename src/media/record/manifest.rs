//! A recording's manifest: `manifest.json` in its directory, rewritten (atomically) whenever a
//! file is added and when it ends. It is the one record of a recording: the API lists the
//! manifests, and one still saying `recording` at start-up was cut by a crash (`interrupted`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::media::tap::TapTrack;

/// Where a recording stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Writing.
    Recording,
    /// Ended: asked to, or a limit (`reason`).
    Stopped,
    /// Ended by an error (`reason`): what was written so far stays.
    Failed,
    /// The server stopped (crashed) while it was recording: the files play up to near then.
    Interrupted,
}

/// One file of a recording.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileInfo {
    /// The file name (in the recording's directory; `GET /api/recordings/{id}/files/{name}`).
    pub name: String,
    /// The track it holds.
    pub track: String,
    /// The publishing participant's client id (`whip` for WHIP ingest).
    pub participant: String,
    /// The participant's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_name: Option<String>,
    /// The publisher's label.
    pub label: String,
    /// `audio` or `video`.
    pub kind: String,
    /// `vp8`, `h264` or `opus`.
    pub codec: String,
    /// When its first frame came, in ms after the recording started: files of one participant
    /// line up at these offsets (their timestamps also start there).
    pub offset_ms: u64,
    /// Bytes, once the file is closed (0 while it is written; listings give the size on disk).
    #[serde(default)]
    pub bytes: u64,
}

/// A recording, as the API shows it and its manifest keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordingInfo {
    /// Its id.
    pub id: String,
    /// The room.
    pub room: String,
    /// See [`State`].
    pub state: State,
    /// Why it ended (`stopped`, `room_empty`, `max_duration`, `max_size`, `shutdown`, or an
    /// error's text), or why it was interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Start, Unix milliseconds.
    pub started: u64,
    /// End, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<u64>,
    /// Audio only, in Ogg/Opus.
    #[serde(default)]
    pub audio_only: bool,
    /// The room's mix (every speaker) in one Ogg/Opus file, rather than a file per track.
    #[serde(default)]
    pub mix: bool,
    /// A composed recording: the composition whose video, with the room's mix, is its one
    /// WebM file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composition: Option<String>,
    /// Its files, in the order they started.
    pub files: Vec<FileInfo>,
    /// Tracks that could not be recorded without transcoding (track id and codec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// Bytes of files already closed (internal bookkeeping of the size limit).
    #[serde(default, skip_serializing)]
    pub closed_bytes: u64,
}

impl RecordingInfo {
    /// Saves it as `dir/manifest.json`, through a temporary file and a rename.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join("manifest.json.tmp");
        let body = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, body)?;
        std::fs::rename(tmp, dir.join("manifest.json"))
    }

    /// Loads `dir/manifest.json`.
    pub fn load(dir: &Path) -> std::io::Result<Self> {
        let body = std::fs::read(dir.join("manifest.json"))?;
        serde_json::from_slice(&body).map_err(std::io::Error::other)
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A file name a person can read: `ROOM_START_PARTICIPANT_LABEL_TRACK.EXT`, with the start in
/// UTC (`20261206-023000`) and anything but `[A-Za-z0-9-]` replaced by `-`.
pub fn file_name(rec: &RecordingInfo, track: &TapTrack, ext: &str) -> String {
    let clean = |s: &str| -> String {
        let s: String =
            s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
        s.chars().take(40).collect()
    };
    let who = track.name.as_deref().map(|n| format!("{}-{}", clean(n), clean(&track.participant)));
    format!(
        "{}_{}_{}_{}_{}.{ext}",
        clean(&rec.room),
        utc_stamp(rec.started / 1000),
        who.unwrap_or_else(|| clean(&track.participant)),
        clean(&track.label),
        clean(&track.id),
    )
}

/// The room-mix file's name: `ROOM_START_room-mix.ogg`.
pub fn mix_file_name(rec: &RecordingInfo) -> String {
    format!("{}_{}_room-mix.ogg", clean_room(rec), utc_stamp(rec.started / 1000))
}

/// A composed recording's file name: `ROOM_START_composed.webm`.
pub fn composed_file_name(rec: &RecordingInfo) -> String {
    format!("{}_{}_composed.webm", clean_room(rec), utc_stamp(rec.started / 1000))
}

fn clean_room(rec: &RecordingInfo) -> String {
    rec.room.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).take(40).collect()
}

/// `YYYYMMDD-HHMMSS` (UTC) of Unix seconds `t` (days to civil date: Howard Hinnant's method).
pub fn utc_stamp(t: u64) -> String {
    let (days, secs) = ((t / 86_400) as i64, t % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_dates() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(1_796_524_200), "20261206-023000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000", "a leap day");
    }
}
