// cuda_emu.h: CUDA's device vocabulary for g++, so an unchanged .cu file runs on the CPU.
//
// confnet's emulator (confnet/gpu/emu.py) compiles one translation unit per .cu file:
//
//     #include "cuda_emu.h"
//     #line 1 "kernel.cu"
//     <the .cu text; only `extern __shared__ T s[];` is rewritten>
//     <one generated extern "C" launcher per extern "C" __global__ kernel>
//
// Execution model. A launch runs its blocks one after the other. Each CUDA thread of a block is a
// fiber with its own stack; a thread runs until it finishes or waits (__syncthreads, a *_sync
// warp intrinsic, mma_sync), then the scheduler runs the next ready fiber in the block's thread
// order (forward, reverse or seeded random, reshuffled at every barrier). A warp operation
// completes when the last lane of its mask arrives; a block barrier completes when every thread
// of the block waits at the same __syncthreads. When nothing can run and the block is not done,
// that is a deadlock, reported with the threads and where each one waits.
//
// The context switch is a few instructions (callee-saved registers, stack pointer, MXCSR and the
// x87 control word): glibc's swapcontext makes a system call per switch to save the signal mask.
// Under ASan and TSan every stack switch is announced to the sanitizer.
//
// Not emulated: inline PTX, cooperative groups, half/bf16 types, exact GPU rounding of the fast
// intrinsics. Kernels keep such paths behind `#ifndef CONFNET_EMU`.
#pragma once

#include <math.h>

#include <atomic>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <source_location>
#include <type_traits>
#include <utility>

#include <dlfcn.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__) && !defined(CUEMU_USE_UCONTEXT)
#define CUEMU_FAST_SWITCH 1
#else
#include <ucontext.h>
#endif

#define CONFNET_EMU 1
#ifndef __CUDA_ARCH__
#define __CUDA_ARCH__ 800
#endif

// ---- keywords ------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
// One copy per block in flight: blocks run one after the other, so a static is that copy.
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __cudart_builtin__

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CUEMU_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/tsan_interface.h>
#define CUEMU_TSAN 1
#endif

// The runtime's own bookkeeping is shared between fibers by design: keep TSan out of it.
#define CUEMU_RT inline __attribute__((no_sanitize("thread")))

// ---- vector types (CUDA's sizes and alignments) ----------------------------------------------
struct uint3 { unsigned int x, y, z; };

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
        : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

#define CUEMU_VEC1(T, N, A)                                                        \
    struct __attribute__((aligned(A))) N##1 { T x; };                             \
    inline constexpr N##1 make_##N##1(T x) { return N##1{x}; }
#define CUEMU_VEC2(T, N, A)                                                        \
    struct __attribute__((aligned(A))) N##2 { T x, y; };                          \
    inline constexpr N##2 make_##N##2(T x, T y) { return N##2{x, y}; }
#define CUEMU_VEC3(T, N)                                                           \
    struct N##3 { T x, y, z; };                                                    \
    inline constexpr N##3 make_##N##3(T x, T y, T z) { return N##3{x, y, z}; }
#define CUEMU_VEC4(T, N, A)                                                        \
    struct __attribute__((aligned(A))) N##4 { T x, y, z, w; };                    \
    inline constexpr N##4 make_##N##4(T x, T y, T z, T w) { return N##4{x, y, z, w}; }

CUEMU_VEC1(signed char, char, 1) CUEMU_VEC2(signed char, char, 2) CUEMU_VEC3(signed char, char)
CUEMU_VEC4(signed char, char, 4)
CUEMU_VEC1(unsigned char, uchar, 1) CUEMU_VEC2(unsigned char, uchar, 2)
CUEMU_VEC3(unsigned char, uchar) CUEMU_VEC4(unsigned char, uchar, 4)
CUEMU_VEC1(short, short, 2) CUEMU_VEC2(short, short, 4) CUEMU_VEC3(short, short)
CUEMU_VEC4(short, short, 8)
CUEMU_VEC1(unsigned short, ushort, 2) CUEMU_VEC2(unsigned short, ushort, 4)
CUEMU_VEC3(unsigned short, ushort) CUEMU_VEC4(unsigned short, ushort, 8)
CUEMU_VEC1(int, int, 4) CUEMU_VEC2(int, int, 8) CUEMU_VEC3(int, int) CUEMU_VEC4(int, int, 16)
CUEMU_VEC1(unsigned int, uint, 4) CUEMU_VEC2(unsigned int, uint, 8)
inline constexpr uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) {
    return uint3{x, y, z};
}
CUEMU_VEC4(unsigned int, uint, 16)
CUEMU_VEC1(long long, longlong, 8) CUEMU_VEC2(long long, longlong, 16)
CUEMU_VEC1(unsigned long long, ulonglong, 8) CUEMU_VEC2(unsigned long long, ulonglong, 16)
CUEMU_VEC1(float, float, 4) CUEMU_VEC2(float, float, 8) CUEMU_VEC3(float, float)
CUEMU_VEC4(float, float, 16)
CUEMU_VEC1(double, double, 8) CUEMU_VEC2(double, double, 16) CUEMU_VEC3(double, double)

static_assert(sizeof(float4) == 16 && alignof(float4) == 16, "float4 as in CUDA");
static_assert(sizeof(float2) == 8 && alignof(float2) == 8, "float2 as in CUDA");
static_assert(sizeof(float3) == 12 && alignof(float3) == 4, "float3 as in CUDA");

static constexpr int warpSize = 32;

// ---- the runtime ---------------------------------------------------------------------------
namespace cuemu {

enum State : int { READY, AT_BARRIER, AT_WARP, DONE, FAILED };
enum WarpKind : int { W_SYNCWARP, W_SHFL, W_BALLOT, W_ANY, W_ALL, W_MMA, W_NKINDS };
inline const char* const warp_kind_name[W_NKINDS] = {
    "__syncwarp", "__shfl*_sync", "__ballot_sync", "__any_sync", "__all_sync",
    "wmma::mma_sync"};

struct Fiber {
    void* sp;                   // saved stack pointer while switched out
    char* stack_lo;             // usable stack: [stack_lo, stack_hi)
    char* stack_hi;
    uint3 tid;
    unsigned linear;            // x + y * blockDim.x + z * blockDim.x * blockDim.y
    State state;
    // where it waits (for deadlock reports)
    const char* file;
    unsigned line;
    const char* what;
    // barrier and warp-op operands and result
    int pred;
    int kind;
    unsigned mask;
    int src;                    // shuffle source lane (absolute lane id in the warp)
    uint64_t value;
    uint64_t result;
    void* frag[4];              // mma_sync: d, a, b, c
#if !defined(CUEMU_FAST_SWITCH)
    ucontext_t uc;
#endif
#if defined(CUEMU_ASAN)
    void* fake_stack;
#endif
#if defined(CUEMU_TSAN)
    void* tsan_fiber;
    char tsan_name[80];
#endif
};

struct LaunchSpec {             // filled by confnet/gpu/emu.py (ctypes mirror: _LaunchSpec)
    unsigned grid[3];
    unsigned block[3];
    uint64_t shared;
    int order;                  // 0 forward, 1 reverse, 2 random
    int pad;
    uint64_t seed;
};

constexpr size_t kMaxDynamicShared = 227 * 1024;   // sm_90's opt-in limit per block
constexpr unsigned kMaxThreads = 1024;

struct Runtime {
    Fiber* fibers = nullptr;
    unsigned capacity = 0;      // fibers with a stack
    unsigned nthreads = 0;
    unsigned order[kMaxThreads];
    Fiber* cur = nullptr;
    void* sched_sp = nullptr;
#if !defined(CUEMU_FAST_SWITCH)
    ucontext_t sched_uc;
#endif
    uint3 block_idx{0, 0, 0};
    dim3 block_dim, grid_dim;
    const char* kernel = "?";
    void (*body)(void**) = nullptr;
    void** args = nullptr;
    int order_kind = 0;
    uint64_t rng = 0;
    unsigned frag_mult = 1;     // WMMA element scrambling, different per order and seed
    unsigned n_done = 0, n_barrier = 0;
    uint64_t block_seq = 0;     // blocks run so far (TSan orders block b before block b + 1)
    bool failed = false;
    bool in_launch = false;
    char error[8192];
#if defined(CUEMU_ASAN)
    void* sched_fake = nullptr;
    const void* sched_stack_bottom = nullptr;
    size_t sched_stack_size = 0;
#endif
#if defined(CUEMU_TSAN)
    void* sched_tsan = nullptr;
#endif
};

inline Runtime rt;
// Dynamic shared memory: one fixed buffer, so `extern __shared__ T s[]` can be a constant pointer.
alignas(256) inline unsigned char dynamic_shared[kMaxDynamicShared];
// Addresses TSan uses as synchronization objects (never read or written).
inline char tsan_sync[64 + 4];
constexpr int kSyncBarrier = 32, kSyncLaunch = 33, kSyncParity = 34;   // warps use 0..31

inline size_t stack_bytes() {
#if defined(CUEMU_ASAN) || defined(CUEMU_TSAN)
    return 512 * 1024;
#else
    return 128 * 1024;
#endif
}

}  // namespace cuemu

#define threadIdx (::cuemu::rt.cur->tid)
#define blockIdx (::cuemu::rt.block_idx)
#define blockDim (::cuemu::rt.block_dim)
#define gridDim (::cuemu::rt.grid_dim)

namespace cuemu {

// ---- the context switch -------------------------------------------------------------------
#if defined(CUEMU_FAST_SWITCH)
// switch_stack(save, to): push the callee-saved registers, MXCSR and the x87 control word on the
// current stack, store the stack pointer in *save, load `to` and pop the same from there.
extern "C" void cuemu_switch_stack(void** save, void* to) __asm__("cuemu_switch_stack");
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".type cuemu_switch_stack,@function\n"
    "cuemu_switch_stack:\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  subq $8, %rsp\n"
    "  stmxcsr (%rsp)\n"
    "  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsp, %rcx\n"
    "  movq %rsi, %rsp\n"
    // Loading MXCSR or the control word stalls the pipeline: only when they differ.
    "  movl (%rsp), %eax\n"
    "  cmpl (%rcx), %eax\n"
    "  je 1f\n"
    "  ldmxcsr (%rsp)\n"
    "1:\n"
    "  movw 4(%rsp), %ax\n"
    "  cmpw 4(%rcx), %ax\n"
    "  je 2f\n"
    "  fldcw 4(%rsp)\n"
    "2:\n"
    "  addq $8, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size cuemu_switch_stack, .-cuemu_switch_stack\n");
#endif

[[noreturn]] CUEMU_RT void fiber_entry();

// A fresh fiber: its stack holds what cuemu_switch_stack pops, with fiber_entry as the return
// address, so the first switch to it "returns" into fiber_entry with an aligned stack.
CUEMU_RT void fiber_init(Fiber* f) {
#if defined(CUEMU_FAST_SWITCH)
    uint64_t* sp = reinterpret_cast<uint64_t*>(reinterpret_cast<uintptr_t>(f->stack_hi) & ~15ull);
    *--sp = 0;                                              // fiber_entry's return address
    *--sp = reinterpret_cast<uint64_t>(&fiber_entry);
    for (int i = 0; i < 6; ++i) *--sp = 0;                  // rbp rbx r12 r13 r14 r15
    --sp;
    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    std::memcpy(sp, &mxcsr, 4);
    std::memcpy(reinterpret_cast<char*>(sp) + 4, &fpucw, 2);
    f->sp = sp;
#else
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack_lo;
    f->uc.uc_stack.ss_size = static_cast<size_t>(f->stack_hi - f->stack_lo);
    f->uc.uc_link = nullptr;
    makecontext(&f->uc, reinterpret_cast<void (*)()>(&fiber_entry), 0);
#endif
}

// Scheduler -> fiber f; returns when f waits, finishes or fails.
CUEMU_RT void resume(Fiber* f) {
    rt.cur = f;
#if defined(CUEMU_ASAN)
    __sanitizer_start_switch_fiber(&rt.sched_fake, f->stack_lo,
                                   static_cast<size_t>(f->stack_hi - f->stack_lo));
#endif
#if defined(CUEMU_TSAN)
    __tsan_switch_to_fiber(f->tsan_fiber, __tsan_switch_to_fiber_no_sync);
#endif
#if defined(CUEMU_FAST_SWITCH)
    cuemu_switch_stack(&rt.sched_sp, f->sp);
#else
    swapcontext(&rt.sched_uc, &f->uc);
#endif
#if defined(CUEMU_ASAN)
    __sanitizer_finish_switch_fiber(rt.sched_fake, nullptr, nullptr);
#endif
    rt.cur = nullptr;
}

// Fiber -> scheduler. `final`: the fiber will never run again (done or failed).
CUEMU_RT void to_scheduler(bool final) {
    Fiber* f = rt.cur;
#if defined(CUEMU_ASAN)
    __sanitizer_start_switch_fiber(final ? nullptr : &f->fake_stack, rt.sched_stack_bottom,
                                   rt.sched_stack_size);
#endif
#if defined(CUEMU_TSAN)
    __tsan_switch_to_fiber(rt.sched_tsan, __tsan_switch_to_fiber_no_sync);
#endif
#if defined(CUEMU_FAST_SWITCH)
    cuemu_switch_stack(&f->sp, rt.sched_sp);
#else
    swapcontext(&f->uc, &rt.sched_uc);
#endif
#if defined(CUEMU_ASAN)
    __sanitizer_finish_switch_fiber(f->fake_stack, &rt.sched_stack_bottom, &rt.sched_stack_size);
#endif
    (void)final;
}

inline void tsan_release(int obj) {
#if defined(CUEMU_TSAN)
    __tsan_release(&tsan_sync[obj]);
#else
    (void)obj;
#endif
}

inline void tsan_acquire(int obj) {
#if defined(CUEMU_TSAN)
    __tsan_acquire(&tsan_sync[obj]);
#else
    (void)obj;
#endif
}

// ---- errors -------------------------------------------------------------------------------
CUEMU_RT int where(char* out, size_t n) {
    const Fiber* f = rt.cur;
    int k = std::snprintf(out, n, "kernel %s, block (%u,%u,%u)", rt.kernel, rt.block_idx.x,
                          rt.block_idx.y, rt.block_idx.z);
    if (f && k >= 0 && static_cast<size_t>(k) < n)
        k += std::snprintf(out + k, n - k, ", thread (%u,%u,%u)", f->tid.x, f->tid.y, f->tid.z);
    return k;
}

// A runtime error in the running thread: record it and leave the fiber for good.
[[noreturn]] CUEMU_RT void fail(const char* fmt, ...) {
    int k = where(rt.error, sizeof rt.error);
    k += std::snprintf(rt.error + k, sizeof rt.error - k, ": ");
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(rt.error + k, sizeof rt.error - k, fmt, ap);
    va_end(ap);
    rt.failed = true;
    rt.cur->state = FAILED;
    to_scheduler(true);
    __builtin_unreachable();
}

// ---- barriers and warp operations ---------------------------------------------------------
CUEMU_RT void wait_here(State s, const char* what, const std::source_location& loc) {
    Fiber* f = rt.cur;
    f->state = s;
    f->what = what;
    f->file = loc.file_name();
    f->line = loc.line();
}

// __syncthreads and its predicate forms: kind 0 plain, 1 or, 2 and, 3 count.
CUEMU_RT int block_barrier(int kind, const char* what, int pred,
                           const std::source_location& loc) {
    Fiber* f = rt.cur;
    wait_here(AT_BARRIER, what, loc);
    f->kind = kind;
    f->pred = pred;
    ++rt.n_barrier;
    tsan_release(kSyncBarrier);
    to_scheduler(false);
    tsan_acquire(kSyncBarrier);
    return static_cast<int>(f->result);
}

CUEMU_RT unsigned lanes_present(unsigned warp_base) {
    unsigned n = rt.nthreads - warp_base;
    return n >= 32 ? 0xffffffffu : ((1u << n) - 1u);
}

CUEMU_RT void mma_complete(unsigned warp_base);

// Every lane of `mask` has arrived at a warp op with that mask: compute the results.
CUEMU_RT void warp_complete(unsigned base, unsigned mask, int kind) {
    Fiber* lanes = rt.fibers + base;
    for (unsigned j = 0; j < 32; ++j)
        if ((mask >> j & 1u) && lanes[j].kind != kind)
            fail("lanes of mask 0x%08x meet at different warp operations: lane %u at %s (%s:%u), "
                 "lane %u at %s (%s:%u)", mask, rt.cur->linear & 31u, warp_kind_name[kind],
                 rt.cur->file, rt.cur->line, j, warp_kind_name[lanes[j].kind], lanes[j].file,
                 lanes[j].line);
    if (kind == W_SHFL) {
        for (unsigned j = 0; j < 32; ++j) {
            if (!(mask >> j & 1u)) continue;
            int s = lanes[j].src;
            // Reading a lane outside the mask is undefined in CUDA: give a NaN pattern.
            lanes[j].result = (s >= 0 && (mask >> s & 1u)) ? lanes[s].value : 0x7fffffff7fffffffull;
        }
    } else if (kind == W_BALLOT || kind == W_ANY || kind == W_ALL) {
        unsigned ballot = 0;
        for (unsigned j = 0; j < 32; ++j)
            if ((mask >> j & 1u) && lanes[j].pred) ballot |= 1u << j;
        uint64_t r = kind == W_BALLOT ? ballot : kind == W_ANY ? (ballot != 0) : (ballot == mask);
        for (unsigned j = 0; j < 32; ++j)
            if (mask >> j & 1u) lanes[j].result = r;
    } else if (kind == W_MMA) {
        mma_complete(base);
    }
    for (unsigned j = 0; j < 32; ++j)
        if (mask >> j & 1u) lanes[j].state = READY;
}

// A warp-synchronous operation of the running lane; returns its result once all lanes of `mask`
// have arrived (the last one to arrive computes every lane's result and runs on).
CUEMU_RT uint64_t warp_op(int kind, unsigned mask, const std::source_location& loc) {
    Fiber* f = rt.cur;
    unsigned lane = f->linear & 31u, base = f->linear & ~31u;
    unsigned eff = mask & lanes_present(base);
    if (!(eff >> lane & 1u))
        fail("%s with mask 0x%08x that does not include the calling lane %u (%s:%u)",
             warp_kind_name[kind], mask, lane, loc.file_name(), loc.line());
    wait_here(AT_WARP, warp_kind_name[kind], loc);
    f->kind = kind;
    f->mask = eff;
    tsan_release(static_cast<int>(base / 32));
    bool all = true;
    for (unsigned j = 0; j < 32 && all; ++j)
        if (eff >> j & 1u) {
            const Fiber& g = rt.fibers[base + j];
            all = g.state == AT_WARP && g.mask == eff;
        }
    if (all)
        warp_complete(base, eff, kind);
    else
        to_scheduler(false);
    tsan_acquire(static_cast<int>(base / 32));
    return f->result;
}

template <class T>
inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "warp shuffles move 32- or 64-bit values");
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}

template <class T>
inline T from_bits(uint64_t b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}

template <class T>
CUEMU_RT T shuffle(unsigned mask, T var, int src, const std::source_location& loc) {
    Fiber* f = rt.cur;
    f->value = to_bits(var);
    f->src = src;
    return from_bits<T>(warp_op(W_SHFL, mask, loc));
}

CUEMU_RT unsigned lane_id() { return rt.cur->linear & 31u; }

}  // namespace cuemu

// ---- the device API: synchronization ------------------------------------------------------
inline void __syncthreads(std::source_location loc = std::source_location::current()) {
    ::cuemu::block_barrier(0, "__syncthreads", 0, loc);
}
inline int __syncthreads_or(int pred, std::source_location loc = std::source_location::current()) {
    return ::cuemu::block_barrier(1, "__syncthreads_or", pred, loc);
}
inline int __syncthreads_and(int pred,
                             std::source_location loc = std::source_location::current()) {
    return ::cuemu::block_barrier(2, "__syncthreads_and", pred, loc);
}
inline int __syncthreads_count(int pred,
                               std::source_location loc = std::source_location::current()) {
    return ::cuemu::block_barrier(3, "__syncthreads_count", pred, loc);
}
inline void __syncwarp(unsigned mask = 0xffffffffu,
                       std::source_location loc = std::source_location::current()) {
    ::cuemu::warp_op(::cuemu::W_SYNCWARP, mask, loc);
}
inline unsigned __ballot_sync(unsigned mask, int pred,
                              std::source_location loc = std::source_location::current()) {
    ::cuemu::rt.cur->pred = pred != 0;
    return static_cast<unsigned>(::cuemu::warp_op(::cuemu::W_BALLOT, mask, loc));
}
inline int __any_sync(unsigned mask, int pred,
                      std::source_location loc = std::source_location::current()) {
    ::cuemu::rt.cur->pred = pred != 0;
    return static_cast<int>(::cuemu::warp_op(::cuemu::W_ANY, mask, loc));
}
inline int __all_sync(unsigned mask, int pred,
                      std::source_location loc = std::source_location::current()) {
    ::cuemu::rt.cur->pred = pred != 0;
    return static_cast<int>(::cuemu::warp_op(::cuemu::W_ALL, mask, loc));
}
// Lanes of this warp that have not exited (the emulator has no divergence to track).
inline unsigned __activemask() {
    unsigned base = ::cuemu::rt.cur->linear & ~31u, m = 0;
    for (unsigned j = 0; j < 32 && base + j < ::cuemu::rt.nthreads; ++j)
        if (::cuemu::rt.fibers[base + j].state != ::cuemu::DONE) m |= 1u << j;
    return m;
}

template <class T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize,
                     std::source_location loc = std::source_location::current()) {
    int lane = static_cast<int>(::cuemu::lane_id());
    int src = (lane & ~(width - 1)) + (src_lane & (width - 1));
    return ::cuemu::shuffle(mask, var, src, loc);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                        std::source_location loc = std::source_location::current()) {
    int lane = static_cast<int>(::cuemu::lane_id());
    int src = (lane & (width - 1)) >= static_cast<int>(delta) ? lane - static_cast<int>(delta) : lane;
    return ::cuemu::shuffle(mask, var, src, loc);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                          std::source_location loc = std::source_location::current()) {
    int lane = static_cast<int>(::cuemu::lane_id());
    int src = (lane & (width - 1)) + static_cast<int>(delta) < width
                  ? lane + static_cast<int>(delta) : lane;
    return ::cuemu::shuffle(mask, var, src, loc);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,
                         std::source_location loc = std::source_location::current()) {
    int lane = static_cast<int>(::cuemu::lane_id());
    int src = lane ^ lane_mask;
    // A lane of a later group of `width` lanes gives back the caller's own value.
    if (src >= ((lane / width) + 1) * width || src >= 32) src = lane;
    return ::cuemu::shuffle(mask, var, src, loc);
}

inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __nanosleep(unsigned) {}
[[noreturn]] inline void __trap() { ::cuemu::fail("__trap() called"); }
[[noreturn]] inline void __brkpt() { ::cuemu::fail("__brkpt() called"); }
CUEMU_RT long long clock64() {
    static long long t = 0;
    return ++t;
}

// ---- atomics (std::atomic_ref, so TSan sees them as atomic) --------------------------------
#define CUEMU_ATOMIC_ADD(T)                                                                 \
    inline T atomicAdd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }          \
    inline T atomicSub(T* p, T v) { return std::atomic_ref<T>(*p).fetch_sub(v); }          \
    inline T atomicExch(T* p, T v) { return std::atomic_ref<T>(*p).exchange(v); }
CUEMU_ATOMIC_ADD(int)
CUEMU_ATOMIC_ADD(unsigned int)
CUEMU_ATOMIC_ADD(unsigned long long)
CUEMU_ATOMIC_ADD(float)
CUEMU_ATOMIC_ADD(double)
#undef CUEMU_ATOMIC_ADD

#define CUEMU_ATOMIC_INT(T)                                                                  \
    inline T atomicMax(T* p, T v) {                                                         \
        std::atomic_ref<T> a(*p);                                                           \
        T old = a.load();                                                                   \
        while (old < v && !a.compare_exchange_weak(old, v)) {}                              \
        return old;                                                                         \
    }                                                                                       \
    inline T atomicMin(T* p, T v) {                                                         \
        std::atomic_ref<T> a(*p);                                                           \
        T old = a.load();                                                                   \
        while (old > v && !a.compare_exchange_weak(old, v)) {}                              \
        return old;                                                                         \
    }                                                                                       \
    inline T atomicCAS(T* p, T compare, T v) {                                              \
        std::atomic_ref<T>(*p).compare_exchange_strong(compare, v);                         \
        return compare;                                                                     \
    }                                                                                       \
    inline T atomicAnd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_and(v); }          \
    inline T atomicOr(T* p, T v) { return std::atomic_ref<T>(*p).fetch_or(v); }            \
    inline T atomicXor(T* p, T v) { return std::atomic_ref<T>(*p).fetch_xor(v); }
CUEMU_ATOMIC_INT(int)
CUEMU_ATOMIC_INT(unsigned int)
CUEMU_ATOMIC_INT(unsigned long long)
CUEMU_ATOMIC_INT(long long)
#undef CUEMU_ATOMIC_INT

inline unsigned atomicInc(unsigned* p, unsigned limit) {
    std::atomic_ref<unsigned> a(*p);
    unsigned old = a.load();
    while (!a.compare_exchange_weak(old, old >= limit ? 0u : old + 1u)) {}
    return old;
}
inline unsigned atomicDec(unsigned* p, unsigned limit) {
    std::atomic_ref<unsigned> a(*p);
    unsigned old = a.load();
    while (!a.compare_exchange_weak(old, (old == 0u || old > limit) ? limit : old - 1u)) {}
    return old;
}

// ---- math and bit intrinsics ----------------------------------------------------------------
template <class To, class From>
inline To cuemu_bit_cast(From v) {
    static_assert(sizeof(To) == sizeof(From));
    To t;
    std::memcpy(&t, &v, sizeof t);
    return t;
}
inline int __float_as_int(float x) { return cuemu_bit_cast<int>(x); }
inline unsigned __float_as_uint(float x) { return cuemu_bit_cast<unsigned>(x); }
inline float __int_as_float(int x) { return cuemu_bit_cast<float>(x); }
inline float __uint_as_float(unsigned x) { return cuemu_bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return cuemu_bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return cuemu_bit_cast<double>(x); }

inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return exp10f(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float* s, float* c) { sincosf(x, s, c); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float fdividef(float x, float y) { return x / y; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0
inline int __float2int_rn(float x) { return static_cast<int>(nearbyintf(x)); }
inline int __float2int_rz(float x) { return static_cast<int>(x); }
inline int __float2int_rd(float x) { return static_cast<int>(floorf(x)); }
inline int __float2int_ru(float x) { return static_cast<int>(ceilf(x)); }
inline unsigned __float2uint_rn(float x) { return static_cast<unsigned>(nearbyintf(x)); }
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) { return static_cast<float>(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) {
    return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x));
}
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
    return (x >> 16) | (x << 16);
}
inline int __mul24(int a, int b) { return a * b; }
inline unsigned __umul24(unsigned a, unsigned b) { return a * b; }
inline int __mulhi(int a, int b) { return static_cast<int>((static_cast<long long>(a) * b) >> 32); }
inline unsigned __umulhi(unsigned a, unsigned b) {
    return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32);
}

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

template <class T>
inline T __ldg(const T* p) { return *p; }
template <class T>
inline T __ldcs(const T* p) { return *p; }
template <class T>
inline void __stcs(T* p, T v) { *p = v; }

// Round to TF32 (10 mantissa bits), to nearest with ties away from zero, as cvt.rna.tf32.f32.
inline float __float_to_tf32(float x) {
    uint32_t u = cuemu_bit_cast<uint32_t>(x);
    if ((u & 0x7f800000u) != 0x7f800000u) u += 0x1000u;   // finite: add half an ulp of TF32
    return cuemu_bit_cast<float>(u & 0xffffe000u);
}

// ---- WMMA (nvcuda::wmma), the TF32 subset --------------------------------------------------
// A fragment's elements are spread over the 32 lanes of a warp in an order that is scrambled by
// the launch's thread order and seed, so a kernel that depends on which lane holds which element
// gives different results across orders (as it would across GPU generations).
namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}
enum layout_t { mem_row_major, mem_col_major };
using ::__float_to_tf32;                  // CUDA declares it in nvcuda::wmma

template <class Use, int M, int N, int K> struct shape;
template <int M, int N, int K> struct shape<matrix_a, M, N, K> {
    static constexpr int rows = M, cols = K;
};
template <int M, int N, int K> struct shape<matrix_b, M, N, K> {
    static constexpr int rows = K, cols = N;
};
template <int M, int N, int K> struct shape<accumulator, M, N, K> {
    static constexpr int rows = M, cols = N;
};

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
    static_assert(std::is_same_v<T, precision::tf32> || std::is_same_v<T, float>,
                  "the emulator's WMMA covers TF32 inputs with float accumulators");
    static_assert(M == 16 && N == 16 && K == 8, "the emulator's WMMA covers m16n16k8");
    using element_type = float;
    static constexpr int rows = shape<Use, M, N, K>::rows, cols = shape<Use, M, N, K>::cols;
    static constexpr int num_elements = rows * cols / 32;
    static constexpr bool col_layout = std::is_same_v<Layout, col_major>;
    float x[num_elements];

    // (row, col) of element e of the calling lane.
    static void coord(int e, int* r, int* c) {
        unsigned total = rows * cols;                       // a power of two: 128 or 256
        unsigned flat = ((::cuemu::lane_id() * num_elements + e) * ::cuemu::rt.frag_mult) &
                        (total - 1);
        *r = static_cast<int>(flat / cols);
        *c = static_cast<int>(flat % cols);
    }
};

template <class Use, int M, int N, int K, class T, class L>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, float v) {
    for (int e = 0; e < f.num_elements; ++e) f.x[e] = v;
}

template <class Use, int M, int N, int K, class T, class L>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const float* p, unsigned ldm) {
    static_assert(!std::is_same_v<Use, accumulator>, "accumulators load with a layout_t");
    for (int e = 0; e < f.num_elements; ++e) {
        int r, c;
        f.coord(e, &r, &c);
        f.x[e] = f.col_layout ? p[r + static_cast<size_t>(c) * ldm]
                              : p[static_cast<size_t>(r) * ldm + c];
    }
}

template <int M, int N, int K, class T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const float* p, unsigned ldm,
                             layout_t layout) {
    for (int e = 0; e < f.num_elements; ++e) {
        int r, c;
        f.coord(e, &r, &c);
        f.x[e] = layout == mem_col_major ? p[r + static_cast<size_t>(c) * ldm]
                                         : p[static_cast<size_t>(r) * ldm + c];
    }
}

template <int M, int N, int K, class T>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm,
                              layout_t layout) {
    for (int e = 0; e < f.num_elements; ++e) {
        int r, c;
        f.coord(e, &r, &c);
        (layout == mem_col_major ? p[r + static_cast<size_t>(c) * ldm]
                                 : p[static_cast<size_t>(r) * ldm + c]) = f.x[e];
    }
}

// D = A * B + C over the warp. A and B are rounded to TF32 (round to nearest); the products of
// TF32 values are exact in float32 and the sum over k is accumulated in float32.
template <class TA, class LA, class TB, class LB, class TC>
inline void mma_sync(fragment<accumulator, 16, 16, 8, TC>& d,
                     const fragment<matrix_a, 16, 16, 8, TA, LA>& a,
                     const fragment<matrix_b, 16, 16, 8, TB, LB>& b,
                     const fragment<accumulator, 16, 16, 8, TC>& c,
                     std::source_location loc = std::source_location::current()) {
    ::cuemu::Fiber* f = ::cuemu::rt.cur;
    if (::cuemu::lanes_present(f->linear & ~31u) != 0xffffffffu)
        ::cuemu::fail("wmma::mma_sync needs a full warp of 32 threads (%s:%u)", loc.file_name(),
                      loc.line());
    f->frag[0] = &d;
    f->frag[1] = const_cast<void*>(static_cast<const void*>(&a));
    f->frag[2] = const_cast<void*>(static_cast<const void*>(&b));
    f->frag[3] = const_cast<void*>(static_cast<const void*>(&c));
    ::cuemu::warp_op(::cuemu::W_MMA, 0xffffffffu, loc);
}

}  // namespace wmma
}  // namespace nvcuda

namespace cuemu {

// The last lane of a warp reaching mma_sync gathers A, B and C from the 32 lanes' fragments
// (each lane's element e sits at its coord), multiplies and scatters D back.
CUEMU_RT void mma_complete(unsigned base) {
    using namespace nvcuda::wmma;
    using FA = fragment<matrix_a, 16, 16, 8, precision::tf32, row_major>;
    using FB = fragment<matrix_b, 16, 16, 8, precision::tf32, row_major>;
    using FC = fragment<accumulator, 16, 16, 8, float>;
    float A[16][8], B[8][16], C[16][16];
    Fiber* saved = rt.cur;
    for (unsigned j = 0; j < 32; ++j) {
        Fiber* g = rt.fibers + base + j;
        rt.cur = g;                                         // coord() reads the lane id
        const float* fa = static_cast<const float*>(g->frag[1]);
        const float* fb = static_cast<const float*>(g->frag[2]);
        const float* fc = static_cast<const float*>(g->frag[3]);
        int r, c;
        for (int e = 0; e < FA::num_elements; ++e) {
            FA::coord(e, &r, &c);
            A[r][c] = __float_to_tf32(fa[e]);
        }
        for (int e = 0; e < FB::num_elements; ++e) {
            FB::coord(e, &r, &c);
            B[r][c] = __float_to_tf32(fb[e]);
        }
        for (int e = 0; e < FC::num_elements; ++e) {
            FC::coord(e, &r, &c);
            C[r][c] = fc[e];
        }
    }
    for (unsigned j = 0; j < 32; ++j) {
        Fiber* g = rt.fibers + base + j;
        rt.cur = g;
        float* fd = static_cast<float*>(g->frag[0]);
        for (int e = 0; e < FC::num_elements; ++e) {
            int r, c;
            FC::coord(e, &r, &c);
            float acc = C[r][c];
            for (int k = 0; k < 8; ++k) acc += A[r][k] * B[k][c];
            fd[e] = acc;
        }
    }
    rt.cur = saved;
}

// ---- the scheduler ------------------------------------------------------------------------
CUEMU_RT uint64_t next_random() {                           // splitmix64
    uint64_t z = (rt.rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

CUEMU_RT void set_order() {
    unsigned n = rt.nthreads;
    for (unsigned i = 0; i < n; ++i) rt.order[i] = rt.order_kind == 1 ? n - 1 - i : i;
    if (rt.order_kind == 2)
        for (unsigned i = n - 1; i > 0; --i) {
            unsigned j = static_cast<unsigned>(next_random() % (i + 1));
            unsigned t = rt.order[i];
            rt.order[i] = rt.order[j];
            rt.order[j] = t;
        }
}

[[noreturn]] CUEMU_RT void fiber_entry() {
#if defined(CUEMU_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &rt.sched_stack_bottom, &rt.sched_stack_size);
#endif
    tsan_acquire(kSyncLaunch);
    tsan_acquire(kSyncParity + static_cast<int>(rt.block_seq & 1u));
    rt.body(rt.args);
    Fiber* f = rt.cur;
    f->state = DONE;
    ++rt.n_done;
    tsan_release(kSyncParity + static_cast<int>((rt.block_seq + 1) & 1u));
    to_scheduler(true);
    __builtin_unreachable();
}

// Threads of the block listed as ranges of linear ids, grouped by what they wait at.
CUEMU_RT void deadlock_report() {
    int k = where(rt.error, sizeof rt.error);
    k += std::snprintf(rt.error + k, sizeof rt.error - k,
                       ": deadlock: a barrier that not every thread reaches (blockDim (%u,%u,%u), "
                       "thread ids are x + y*blockDim.x + z*blockDim.x*blockDim.y):",
                       rt.block_dim.x, rt.block_dim.y, rt.block_dim.z);
    bool listed[kMaxThreads] = {};
    for (unsigned i = 0; i < rt.nthreads; ++i) {
        if (listed[i]) continue;
        const Fiber& a = rt.fibers[i];
        auto same = [&](const Fiber& b) {
            if (b.state != a.state) return false;
            if (a.state == DONE) return true;
            return b.line == a.line && std::strcmp(b.file, a.file) == 0 &&
                   std::strcmp(b.what, a.what) == 0 && (a.state != AT_WARP || b.mask == a.mask);
        };
        k += std::snprintf(rt.error + k, sizeof rt.error - k, " threads [");
        bool first = true;
        for (unsigned j = i; j < rt.nthreads && k < static_cast<int>(sizeof rt.error) - 200;) {
            if (listed[j] || !same(rt.fibers[j])) { ++j; continue; }
            unsigned e = j;
            while (e + 1 < rt.nthreads && !listed[e + 1] && same(rt.fibers[e + 1])) ++e;
            for (unsigned t = j; t <= e; ++t) listed[t] = true;
            k += std::snprintf(rt.error + k, sizeof rt.error - k, first ? "%u" : ",%u", j);
            if (e > j) k += std::snprintf(rt.error + k, sizeof rt.error - k, "-%u", e);
            first = false;
            j = e + 1;
        }
        if (a.state == DONE)
            k += std::snprintf(rt.error + k, sizeof rt.error - k, "] exited;");
        else if (a.state == AT_WARP)
            k += std::snprintf(rt.error + k, sizeof rt.error - k, "] wait at %s mask 0x%08x (%s:%u);",
                               a.what, a.mask, a.file, a.line);
        else
            k += std::snprintf(rt.error + k, sizeof rt.error - k, "] wait at %s (%s:%u);", a.what,
                               a.file, a.line);
        if (k >= static_cast<int>(sizeof rt.error) - 200) break;
    }
    if (k > 0 && rt.error[k - 1] == ';') rt.error[k - 1] = '.';
    rt.failed = true;
}

// Every thread waits at a __syncthreads: the same one (else a deadlock), then release them.
CUEMU_RT bool release_barrier() {
    Fiber* fs = rt.fibers;
    int kind = fs[0].kind;
    for (unsigned i = 1; i < rt.nthreads; ++i)
        if (fs[i].line != fs[0].line || fs[i].kind != kind ||
            (fs[i].file != fs[0].file && std::strcmp(fs[i].file, fs[0].file)))
            return false;
    int any = 0, all = 1, count = 0;
    for (unsigned i = 0; i < rt.nthreads; ++i) {
        any |= fs[i].pred != 0;
        all &= fs[i].pred != 0;
        count += fs[i].pred != 0;
    }
    for (unsigned i = 0; i < rt.nthreads; ++i) {
        fs[i].result = kind == 1 ? any : kind == 2 ? all : kind == 3 ? count : 0;
        fs[i].kind = 0;
        fs[i].state = READY;
    }
    rt.n_barrier = 0;
    if (rt.order_kind == 2) set_order();
    return true;
}

CUEMU_RT void run_block() {
    unsigned n = rt.nthreads;
    for (unsigned i = 0; i < n; ++i) {
        Fiber* f = rt.fibers + i;
        f->linear = i;
        f->tid = uint3{i % rt.block_dim.x, (i / rt.block_dim.x) % rt.block_dim.y,
                       i / (rt.block_dim.x * rt.block_dim.y)};
        f->state = READY;
        f->kind = 0;
        f->pred = 0;
        fiber_init(f);
#if defined(CUEMU_TSAN)
        std::snprintf(f->tsan_name, sizeof f->tsan_name, "%s block (%u,%u,%u) thread (%u,%u,%u)",
                      rt.kernel, rt.block_idx.x, rt.block_idx.y, rt.block_idx.z, f->tid.x,
                      f->tid.y, f->tid.z);
        __tsan_set_fiber_name(f->tsan_fiber, f->tsan_name);
#endif
    }
    rt.n_done = rt.n_barrier = 0;
    set_order();
    for (;;) {
        bool progressed = false;
        for (unsigned k = 0; k < n; ++k) {
            Fiber* f = rt.fibers + rt.order[k];
            if (f->state != READY) continue;
            resume(f);
            if (rt.failed) return;
            progressed = true;
        }
        if (rt.n_done == n) return;
        if (progressed) continue;
        if (rt.n_barrier == n && release_barrier()) continue;
        deadlock_report();
        return;
    }
}

CUEMU_RT bool ensure_fibers(unsigned n) {
    if (n <= rt.capacity) return true;
    Fiber* fs = static_cast<Fiber*>(std::calloc(kMaxThreads, sizeof(Fiber)));
    if (!rt.fibers) {
        if (!fs) return false;
        rt.fibers = fs;
    } else {
        std::free(fs);
    }
    size_t bytes = stack_bytes(), page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    for (unsigned i = rt.capacity; i < n; ++i) {
        // A guard page below each stack turns an overflow into a fault, not silent corruption.
        char* m = static_cast<char*>(mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE,
                                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
        if (m == MAP_FAILED) return false;
        mprotect(m, page, PROT_NONE);
        Fiber* f = rt.fibers + i;
        f->stack_lo = m + page;
        // Stagger the stack tops so the fibers' hot frames do not share cache sets.
        f->stack_hi = m + page + bytes - (i % 64) * 64;
#if defined(CUEMU_TSAN)
        f->tsan_fiber = __tsan_create_fiber(0);
#endif
    }
    rt.capacity = n;
    return true;
}

// ---- runtime errors outside the sanitizers: faults inside a kernel become launch errors ----
#if !defined(CUEMU_ASAN) && !defined(CUEMU_TSAN)
CUEMU_RT void on_fault(int sig, siginfo_t* info, void*) {
    Fiber* f = rt.cur;
    if (!rt.in_launch || !f) {                              // not in kernel code: default action
        signal(sig, SIG_DFL);
        return;
    }
    const char* name = sig == SIGSEGV ? "invalid memory access (SIGSEGV)"
                       : sig == SIGBUS ? "misaligned or invalid memory access (SIGBUS)"
                       : sig == SIGFPE ? "arithmetic fault, e.g. integer division by zero (SIGFPE)"
                                       : "illegal instruction (SIGILL)";
    const char* addr = static_cast<const char*>(info->si_addr);
    bool overflow = sig == SIGSEGV && addr < f->stack_lo &&
                    addr >= f->stack_lo - static_cast<size_t>(sysconf(_SC_PAGESIZE));
    fail("%s at address %p%s", name, info->si_addr,
         overflow ? " (the thread's stack overflowed: too large local arrays?)" : "");
}

struct FaultGuard {
    struct sigaction old[4];
    stack_t old_stack;
    static constexpr int sigs[4] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    alignas(16) static inline char alt_stack[64 * 1024];
    FaultGuard() {
        stack_t ss{};
        ss.ss_sp = alt_stack;
        ss.ss_size = sizeof alt_stack;
        sigaltstack(&ss, &old_stack);
        struct sigaction sa{};
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        for (int i = 0; i < 4; ++i) sigaction(sigs[i], &sa, &old[i]);
    }
    ~FaultGuard() {
        for (int i = 0; i < 4; ++i) sigaction(sigs[i], &old[i], nullptr);
        sigaltstack(&old_stack, nullptr);
    }
};
#endif

#if defined(CUEMU_ASAN) || defined(CUEMU_TSAN)
// Sanitizer reports print the process's threads, not CUDA's: name the block and thread.
CUEMU_RT void print_where() {
    static bool printed = false;
    if (!rt.in_launch || printed) return;
    printed = true;
    char buf[512];
    where(buf, sizeof buf);
    std::fprintf(stderr, "confnet emu: the error above happened in %s\n", buf);
}
#if defined(CUEMU_ASAN)
CUEMU_RT void on_asan_report(const char*) { print_where(); }
#endif
#endif

CUEMU_RT void install_sanitizer_hooks() {
#if defined(CUEMU_ASAN) || defined(CUEMU_TSAN)
    static bool done = false;
    if (done) return;
    done = true;
    __sanitizer_set_death_callback(print_where);
#if defined(CUEMU_ASAN)
    __asan_set_error_report_callback(on_asan_report);
    // UBSan's runtime is a separate library with its own copy of the death callback.
    if (void* ubsan = dlopen("libubsan.so.1", RTLD_NOW | RTLD_NOLOAD))
        if (void* set = dlsym(ubsan, "__sanitizer_set_death_callback"))
            reinterpret_cast<void (*)(void (*)())>(set)(print_where);
#endif
#endif
}

CUEMU_RT int launch(const LaunchSpec* s, const char* kernel, void (*body)(void**), void** args) {
    rt.kernel = kernel;
    rt.error[0] = 0;
    rt.failed = false;
    unsigned n = s->block[0] * s->block[1] * s->block[2];
    if (n == 0 || n > kMaxThreads) {
        std::snprintf(rt.error, sizeof rt.error, "kernel %s: block (%u,%u,%u) has %u threads; "
                      "CUDA allows 1 to %u", kernel, s->block[0], s->block[1], s->block[2], n,
                      kMaxThreads);
        return 1;
    }
    if (s->block[2] > 64 || s->grid[1] > 65535 || s->grid[2] > 65535 || !s->grid[0] ||
        !s->grid[1] || !s->grid[2]) {
        std::snprintf(rt.error, sizeof rt.error, "kernel %s: invalid launch geometry grid "
                      "(%u,%u,%u) block (%u,%u,%u)", kernel, s->grid[0], s->grid[1], s->grid[2],
                      s->block[0], s->block[1], s->block[2]);
        return 1;
    }
    if (s->shared > kMaxDynamicShared) {
        std::snprintf(rt.error, sizeof rt.error, "kernel %s: %llu bytes of dynamic shared memory; "
                      "the limit is %zu", kernel, static_cast<unsigned long long>(s->shared),
                      kMaxDynamicShared);
        return 1;
    }
    if (!ensure_fibers(n)) {
        std::snprintf(rt.error, sizeof rt.error, "kernel %s: cannot allocate %u thread stacks",
                      kernel, n);
        return 1;
    }
    install_sanitizer_hooks();
    rt.nthreads = n;
    rt.block_dim = dim3(s->block[0], s->block[1], s->block[2]);
    rt.grid_dim = dim3(s->grid[0], s->grid[1], s->grid[2]);
    rt.body = body;
    rt.args = args;
    rt.order_kind = s->order;
    rt.frag_mult = s->order == 0 ? 1u : s->order == 1 ? 37u : (static_cast<unsigned>(s->seed) * 2u
                                                             + 77u) | 1u;
#if defined(CUEMU_TSAN)
    rt.sched_tsan = __tsan_get_current_fiber();
    __tsan_release(&tsan_sync[kSyncLaunch]);
#endif
#if !defined(CUEMU_ASAN) && !defined(CUEMU_TSAN)
    FaultGuard guard;
#endif
    rt.in_launch = true;
    for (unsigned bz = 0; bz < s->grid[2] && !rt.failed; ++bz)
        for (unsigned by = 0; by < s->grid[1] && !rt.failed; ++by)
            for (unsigned bx = 0; bx < s->grid[0] && !rt.failed; ++bx) {
                rt.block_idx = uint3{bx, by, bz};
                ++rt.block_seq;
                rt.rng = s->seed ^ (0x9e3779b97f4a7c15ull *
                                    (1 + bx + s->grid[0] * (by + static_cast<uint64_t>(s->grid[1]) * bz)));
                // Dynamic shared memory starts as NaN each block; beyond its size, ASan poison.
                uint32_t* w = reinterpret_cast<uint32_t*>(dynamic_shared);
                for (size_t i = 0; i < (s->shared + 3) / 4; ++i) w[i] = 0x7fffffffu;
#if defined(CUEMU_ASAN)
                __asan_unpoison_memory_region(dynamic_shared, s->shared);
                __asan_poison_memory_region(dynamic_shared + s->shared,
                                            kMaxDynamicShared - s->shared);
#endif
                run_block();
            }
    rt.in_launch = false;
#if defined(CUEMU_ASAN)
    // Abandoned fibers (after an error) leave poisoned frames on the stacks that are reused.
    if (rt.failed)
        for (unsigned i = 0; i < n; ++i)
            __asan_unpoison_memory_region(rt.fibers[i].stack_lo,
                                          rt.fibers[i].stack_hi - rt.fibers[i].stack_lo);
    __asan_unpoison_memory_region(dynamic_shared, kMaxDynamicShared);
#endif
#if defined(CUEMU_TSAN)
    __tsan_acquire(&tsan_sync[kSyncParity]);
    __tsan_acquire(&tsan_sync[kSyncParity + 1]);
#endif
    return rt.failed ? 1 : 0;
}

// ---- kernel parameters: the launcher unpacks void* args into the kernel's own types ------
template <class T>
constexpr char type_code() {
    if constexpr (std::is_pointer_v<T>) return 'p';
    else if constexpr (std::is_same_v<T, float>) return 'f';
    else if constexpr (std::is_same_v<T, double>) return 'd';
    else if constexpr (std::is_same_v<T, bool>) return '?';
    else if constexpr (std::is_integral_v<T> && sizeof(T) == 1) return std::is_signed_v<T> ? 'b' : 'B';
    else if constexpr (std::is_integral_v<T> && sizeof(T) == 2) return std::is_signed_v<T> ? 'h' : 'H';
    else if constexpr (std::is_integral_v<T> && sizeof(T) == 4) return std::is_signed_v<T> ? 'i' : 'I';
    else if constexpr (std::is_integral_v<T> && sizeof(T) == 8) return std::is_signed_v<T> ? 'q' : 'Q';
    else return 'x';                                        // by-value struct: not supported
}

template <class... A>
const char* signature(void (*)(A...)) {
    static const char codes[] = {type_code<A>()..., '\0'};
    return codes;
}

template <class... A, size_t... I>
inline void invoke_impl(void (*k)(A...), void** args, std::index_sequence<I...>) {
    k(*static_cast<std::remove_cv_t<A>*>(args[I])...);
}

template <class... A>
inline void invoke(void (*k)(A...), void** args) {
    invoke_impl(k, args, std::index_sequence_for<A...>{});
}

}  // namespace cuemu

extern "C" __attribute__((visibility("default"), used)) const char* cuemu_error() {
    return ::cuemu::rt.error;
}
