//! The process's allocator: jemalloc, in one arena, handing freed pages back
//! to the kernel at once.
//!
//! A full model builds the desired ruleset, its diff and a netlink batch of
//! tens of MiB at 100,000 pods and 10,000 policies, then frees them. What a
//! general-purpose allocator keeps of that is the agent's resident memory
//! until the next full model.
//! - glibc's malloc keeps it in the arena of the blocking-pool thread that
//!   freed it, and returns only the top of each heap (measured: 58 MiB of
//!   the settled RSS at that size, without a `malloc_trim`).
//! - The container image's musl allocator is slow under threads (ripgrep
//!   links jemalloc into its musl builds for the same reason).
//!
//! jemalloc behaves the same in both builds, so the memory benchmark
//! measures what ships. One arena (the agent allocates mostly on one thread
//! at a time; thread caches keep the rest fast) and no decay delay (return
//! dirty pages as they are freed) took the agent at 100k/10k from 228 / 289
//! MiB settled / peak (glibc with `malloc_trim`) to 193 / 272 MiB; glibc
//! with one arena reached 209 / 260, mimalloc at best 227 / 306, jemalloc's
//! own defaults 225 / 321.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's compiled-in options (read before `main`, hence a linked
/// symbol rather than a call): `malloc_conf`, under the prefix
/// tikv-jemalloc-sys gives every jemalloc symbol. `MALLOC_CONF` in the
/// environment (`_RJEM_MALLOC_CONF`) still overrides them. C reads the text
/// up to its NUL; the compiler holds the declared length to the literal's.
#[expect(
    unsafe_code,
    reason = "jemalloc reads its options from a C symbol; naming it is an unsafe attribute"
)]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 44] = b"narenas:1,dirty_decay_ms:0,muzzy_decay_ms:0\0";
