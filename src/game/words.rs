//! The built-in word list of the drawing game: things anyone can sketch in a minute.

/// The words a round may draw.
pub const WORDS: &[&str] = &[
    "apple", "anchor", "balloon", "banana", "bicycle", "bridge", "butterfly", "cactus", "camera",
    "candle", "castle", "cloud", "crown", "diamond", "dragon", "drum", "elephant", "envelope",
    "feather", "fish", "flower", "ghost", "giraffe", "guitar", "hammer", "helicopter", "house",
    "island", "kite", "ladder", "lighthouse", "moon", "mountain", "mushroom", "octopus", "owl",
    "penguin", "pizza", "rainbow", "robot", "rocket", "sailboat", "snail", "snowman", "spider",
    "sun", "tree", "umbrella", "volcano", "whale",
];
