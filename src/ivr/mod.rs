//! The IVR dialogue: a sans-IO state machine (events in: digits, timers, playback finished,
//! lookups done, hang-up; actions out: play, stop, timers, lookups, provision, hang up).
