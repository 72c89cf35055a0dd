//! A guest whose tool name can collide with another's. Tests only.

wit_bindgen::generate!({ path: "wit", world: "clash", generate_all });

struct Clash;

impl exports::witbox::clash::plain::Guest for Clash {
    fn env() -> u32 {
        7
    }
}

export!(Clash);
