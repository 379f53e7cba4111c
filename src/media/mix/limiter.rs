//! A look-ahead-free peak limiter per output stream: the whole 20 ms frame is known before it is
//! scaled, so the gain drops at once to what keeps the frame's peak under the ceiling, and
//! recovers slowly (no pumping). The output never reaches the rails.

use super::FRAME;

/// The ceiling, about -1 dBFS.
pub const CEILING: f32 = 0.89 * i16::MAX as f32;
/// How much of the way back to unity gain is recovered per frame.
const RELEASE: f32 = 0.05;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Limiter {
    gain: f32,
}

impl Default for Limiter {
    fn default() -> Self {
        Self { gain: 1.0 }
    }
}

impl Limiter {
    /// The gain applied at the end of the last frame.
    pub fn gain(&self) -> f32 {
        self.gain
    }

    /// Scales `input` (a sum of voices, any range) into `out`.
    pub fn process(&mut self, input: &[f32; FRAME as usize], out: &mut [i16; FRAME as usize]) {
        let peak = input.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let safe = if peak > CEILING { CEILING / peak } else { 1.0 };
        let end = if safe < self.gain { safe } else { self.gain + (safe - self.gain) * RELEASE };
        let start = self.gain;
        let step = (end - start) / FRAME as f32;
        for (k, (x, o)) in input.iter().zip(out.iter_mut()).enumerate() {
            // Ramp between the gains, but never above what keeps this frame safe.
            let g = (start + step * (k + 1) as f32).min(safe);
            *o = (x * g).clamp(-CEILING, CEILING) as i16;
        }
        self.gain = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_clips_and_recovers_slowly() {
        let mut l = Limiter::default();
        let mut out = [0i16; FRAME as usize];
        let loud: [f32; FRAME as usize] = std::array::from_fn(|k| 3.0 * 32767.0 * (k as f32 * 0.0576).sin());
        for _ in 0..10 {
            l.process(&loud, &mut out);
            let peak = out.iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!(f32::from(peak) <= CEILING, "peak {peak}");
            assert!(peak > 20000, "not squashed to nothing: {peak}");
        }
        let quiet: [f32; FRAME as usize] = std::array::from_fn(|k| 1000.0 * (k as f32 * 0.0576).sin());
        l.process(&quiet, &mut out);
        assert!(l.gain() < 0.5, "releases slowly: {}", l.gain());
        for _ in 0..200 {
            l.process(&quiet, &mut out);
        }
        assert!(l.gain() > 0.99, "back to unity: {}", l.gain());
    }
}
