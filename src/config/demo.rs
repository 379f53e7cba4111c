//! The namespaces the demo pages add unless the configuration names them.

use super::{ChannelOptions, Config};

impl Config {
    /// The `/game` demo's namespaces (`src/game/mod.rs` says what each is for).
    fn add_game_namespaces(&mut self) {
        let kept = |size, ttl| ChannelOptions {
            history_size: size,
            history_ttl: ttl,
            presence: false,
            ..ChannelOptions::default()
        };
        let call = ChannelOptions {
            history_size: 20,
            history_ttl: 600,
            join_leave: true,
            rooms: true,
            ..ChannelOptions::default()
        };
        let games = [
            ("game", call),
            ("gamestate", ChannelOptions { client_publish: false, ..kept(100, 3600) }),
            ("gamedraw", ChannelOptions { datagrams: true, ..kept(4000, 3600) }),
            ("gameguess", ChannelOptions { private: true, ..kept(0, 60) }),
        ];
        for (ns, options) in games {
            self.namespaces.entry(ns.into()).or_insert(options);
        }
    }

    /// Adds the demo app's namespaces unless the configuration sets them.
    pub fn with_demo_namespaces(mut self) -> Self {
        if self.demo {
            self.namespaces.entry("chat".into()).or_insert(ChannelOptions {
                history_size: 200,
                join_leave: true,
                ..ChannelOptions::default()
            });
            self.namespaces.entry("demo".into()).or_insert(ChannelOptions {
                client_publish: false,
                presence: false,
                ..ChannelOptions::default()
            });
            self.namespaces.entry("room".into()).or_insert(ChannelOptions {
                history_size: 100,
                history_ttl: 60,
                join_leave: true,
                rooms: true,
                ..ChannelOptions::default()
            });
            // The transport lab's sessions (`lab:ID`): history to resume from after its forced
            // drops; datagrams for the unreliable techniques that ask for them.
            self.namespaces.entry("lab".into()).or_insert(ChannelOptions {
                history_size: 2000,
                history_ttl: 600,
                client_publish: false,
                presence: false,
                datagrams: true,
                ..ChannelOptions::default()
            });
            self.add_game_namespaces();
            self.namespaces.entry("cursors".into()).or_insert(ChannelOptions {
                history_size: 0,
                join_leave: true,
                datagrams: true,
                ..ChannelOptions::default()
            });
        }
        self
    }
}
