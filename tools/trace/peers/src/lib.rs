//! rlsf (a TLSF) and talc (a kernel-style allocator) behind a C ABI, so the
//! replay scoreboard calls them through Deno FFI exactly as it calls glibc.
//!
//! Each allocator manages one arena the caller hands over with `*_init` (an
//! ArrayBuffer the TypeScript side reuses across repetitions, so every
//! repetition runs on memory touched before). One heap per allocator at a
//! time: the replay is single-threaded and makes heaps one after another.
//!
//! `*_free` and `*_realloc` take the block's size as well: talc needs the
//! allocation's layout to free it (Rust's allocator contract), rlsf ignores it.
//! Every block is aligned to `ALIGN_BYTES`.

#![allow(static_mut_refs)]

use core::alloc::Layout;
use core::ptr::{null_mut, NonNull};

/// The alignment of every block: the project's allocator's default granule.
const ALIGN_BYTES: usize = 8;

/// rlsf with 28 first-level classes (blocks up to 8 GiB) and 32 second-level ones.
type Rlsf = rlsf::Tlsf<'static, u32, u32, 28, 32>;

static mut RLSF: Option<Rlsf> = None;
static mut TALC: Option<talc::Talc<talc::ErrOnOom>> = None;

fn layout(size_bytes: usize) -> Option<Layout> {
    Layout::from_size_align(size_bytes.max(1), ALIGN_BYTES).ok()
}

/// `int rlsf_peer_init(uint8_t *arena, size_t length)`: a fresh heap over the arena; 1 on success.
///
/// # Safety
/// `arena` must be valid for `length` bytes until the next `rlsf_peer_init`.
#[no_mangle]
pub unsafe extern "C" fn rlsf_peer_init(arena: *mut u8, length: usize) -> u32 {
    let mut tlsf = Rlsf::new();
    let Some(base) = NonNull::new(arena) else {
        return 0;
    };
    let block = NonNull::slice_from_raw_parts(base, length);
    let created = tlsf.insert_free_block_ptr(block).is_some();
    RLSF = Some(tlsf);
    created as u32
}

/// `void *rlsf_peer_malloc(size_t size)`: a block, or NULL.
///
/// # Safety
/// `rlsf_peer_init` must have succeeded.
#[no_mangle]
pub unsafe extern "C" fn rlsf_peer_malloc(size_bytes: usize) -> *mut u8 {
    let (Some(tlsf), Some(layout)) = (RLSF.as_mut(), layout(size_bytes)) else {
        return null_mut();
    };
    tlsf.allocate(layout).map_or(null_mut(), NonNull::as_ptr)
}

/// `void rlsf_peer_free(void *ptr, size_t size)`: frees a block (NULL is ignored).
///
/// # Safety
/// `ptr` must be a live block of the current heap.
#[no_mangle]
pub unsafe extern "C" fn rlsf_peer_free(ptr: *mut u8, _size_bytes: usize) {
    if let (Some(tlsf), Some(block)) = (RLSF.as_mut(), NonNull::new(ptr)) {
        tlsf.deallocate(block, ALIGN_BYTES);
    }
}

/// `void *rlsf_peer_realloc(void *ptr, size_t old_size, size_t size)`: the moved block, or NULL (the old one kept).
///
/// # Safety
/// `ptr` must be a live block of the current heap, or NULL.
#[no_mangle]
pub unsafe extern "C" fn rlsf_peer_realloc(
    ptr: *mut u8,
    _old: usize,
    size_bytes: usize,
) -> *mut u8 {
    let Some(block) = NonNull::new(ptr) else {
        return rlsf_peer_malloc(size_bytes);
    };
    let (Some(tlsf), Some(layout)) = (RLSF.as_mut(), layout(size_bytes)) else {
        return null_mut();
    };
    tlsf.reallocate(block, layout)
        .map_or(null_mut(), NonNull::as_ptr)
}

/// `int talc_peer_init(uint8_t *arena, size_t length)`: a fresh heap over the arena; 1 on success.
///
/// # Safety
/// `arena` must be valid for `length` bytes until the next `talc_peer_init`.
#[no_mangle]
pub unsafe extern "C" fn talc_peer_init(arena: *mut u8, length: usize) -> u32 {
    let mut heap = talc::Talc::new(talc::ErrOnOom);
    let claimed = heap
        .claim(talc::Span::from_base_size(arena, length))
        .is_ok();
    TALC = Some(heap);
    claimed as u32
}

/// `void *talc_peer_malloc(size_t size)`: a block, or NULL.
///
/// # Safety
/// `talc_peer_init` must have succeeded.
#[no_mangle]
pub unsafe extern "C" fn talc_peer_malloc(size_bytes: usize) -> *mut u8 {
    let (Some(heap), Some(layout)) = (TALC.as_mut(), layout(size_bytes)) else {
        return null_mut();
    };
    heap.malloc(layout).map_or(null_mut(), NonNull::as_ptr)
}

/// `void talc_peer_free(void *ptr, size_t size)`: frees a block of `size` bytes (NULL is ignored).
///
/// # Safety
/// `ptr` must be a live block of the current heap, allocated with `size`.
#[no_mangle]
pub unsafe extern "C" fn talc_peer_free(ptr: *mut u8, size_bytes: usize) {
    let (Some(heap), Some(block), Some(layout)) =
        (TALC.as_mut(), NonNull::new(ptr), layout(size_bytes))
    else {
        return;
    };
    heap.free(block, layout);
}

/// `void *talc_peer_realloc(void *ptr, size_t old_size, size_t size)`: the moved block, or NULL (the old one kept).
///
/// # Safety
/// `ptr` must be a live block of the current heap allocated with `old_size`, or NULL.
#[no_mangle]
pub unsafe extern "C" fn talc_peer_realloc(
    ptr: *mut u8,
    old_bytes: usize,
    size_bytes: usize,
) -> *mut u8 {
    let Some(block) = NonNull::new(ptr) else {
        return talc_peer_malloc(size_bytes);
    };
    let (Some(heap), Some(old)) = (TALC.as_mut(), layout(old_bytes)) else {
        return null_mut();
    };
    let new_bytes = size_bytes.max(1);
    if new_bytes > old.size() {
        heap.grow(block, old, new_bytes)
            .map_or(null_mut(), NonNull::as_ptr)
    } else {
        if new_bytes < old.size() {
            heap.shrink(block, old, new_bytes);
        }
        block.as_ptr()
    }
}
