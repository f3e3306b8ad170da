//! What this driver handles, said once: `announce_driver` writes the list that `src/lib.rs`
//! includes as its `DriverEntry` compatibles, and the `links` metadata through which the
//! image crate's build script learns it, so that a board whose console or GIC no linked
//! driver handles fails to build, and the image links every driver it depends on.

fn main() {
    platform_dsl::image::announce_driver("rtc-pl031", &["arm,pl031"]);
}
