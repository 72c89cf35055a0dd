//! A guest with a resource in a tool signature; loading it must fail. Tests only.

wit_bindgen::generate!({ path: "wit", world: "badtype", generate_all });

use exports::witbox::badtype::counters::{Counter, Guest, GuestCounter};

struct Badtype;

struct MyCounter;

impl GuestCounter for MyCounter {
    fn new() -> Self {
        MyCounter
    }
    fn get(&self) -> u32 {
        0
    }
}

impl Guest for Badtype {
    type Counter = MyCounter;
    fn make() -> Counter {
        Counter::new(MyCounter)
    }
}

export!(Badtype);
