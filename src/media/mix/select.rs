//! Speaker selection: each input's loudness as an RFC 6464 level (-dBov, 0 loudest, 127 silent),
//! from the header extension the sender puts on each packet, or else from the decoded energy;
//! smoothed (fast attack, slow decay) so a word's pauses do not drop a speaker, and the current
//! speakers keep their place unless someone is clearly louder.

/// Quieter than this (in -dBov) is not speech.
pub const SILENT: f32 = 70.0;
/// A current speaker counts this much louder when ranked (dB), so speakers do not flap.
const HYSTERESIS: f32 = 6.0;
/// How much of a level rise (quieter) is taken per 20 ms frame.
const DECAY: f32 = 0.08;

/// The RFC 6464 level of a frame of samples.
pub fn level_of(pcm: &[f32]) -> u8 {
    if pcm.is_empty() {
        return 127;
    }
    let mean_square = pcm.iter().map(|s| s * s).sum::<f32>() / pcm.len() as f32;
    let rms = mean_square.sqrt() / i16::MAX as f32;
    if rms <= 0.0 {
        return 127;
    }
    (-20.0 * rms.log10()).clamp(0.0, 127.0) as u8
}

/// Smooths `level` (the last frame's) into `smoothed`.
pub fn smooth(smoothed: f32, level: u8) -> f32 {
    let l = f32::from(level.min(127));
    if l < smoothed { (l + smoothed) / 2.0 } else { smoothed + (l - smoothed) * DECAY }
}

/// Picks at most `max` speakers from `(id, smoothed level, is a speaker now)`, loudest first.
pub fn pick<K: Clone>(candidates: &[(K, f32, bool)], max: usize) -> Vec<K> {
    let mut ranked: Vec<(f32, &K)> = candidates
        .iter()
        .filter(|(_, level, _)| *level < SILENT)
        .map(|(k, level, now)| (level - if *now { HYSTERESIS } else { 0.0 }, k))
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
    ranked.into_iter().take(max).map(|(_, k)| k.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_of_known_signals() {
        assert_eq!(level_of(&[0.0; 960]), 127);
        let full: Vec<f32> = (0..960).map(|k| 32767.0 * (k as f32 * 0.0576).sin()).collect();
        assert!(level_of(&full) <= 4, "a full-scale sine is about -3 dBov: {}", level_of(&full));
        let quiet: Vec<f32> = full.iter().map(|s| s / 100.0).collect();
        assert!((42..=44).contains(&level_of(&quiet)), "{}", level_of(&quiet));
    }

    #[test]
    fn the_loudest_few_with_hysteresis_and_no_silent_ones() {
        let c = vec![("a", 30.0, false), ("b", 20.0, false), ("c", 10.0, false), ("d", 90.0, false)];
        assert_eq!(pick(&c, 2), vec!["c", "b"]);
        assert_eq!(pick(&c, 9), vec!["c", "b", "a"], "d is silent");
        let c = vec![("a", 24.0, true), ("b", 20.0, false)];
        assert_eq!(pick(&c, 1), vec!["a"], "b is not clearly louder than the speaker");
        let c = vec![("a", 30.0, true), ("b", 20.0, false)];
        assert_eq!(pick(&c, 1), vec!["b"]);
    }

    #[test]
    fn smoothing_attacks_fast_and_decays_slowly() {
        let mut s = 127.0;
        s = smooth(s, 20);
        assert!(s < 80.0);
        let mut t = 20.0;
        for _ in 0..5 {
            t = smooth(t, 127);
        }
        assert!(t < SILENT, "a 100 ms pause keeps a speaker: {t}");
        for _ in 0..30 {
            t = smooth(t, 127);
        }
        assert!(t > SILENT, "a long silence does not: {t}");
    }
}
