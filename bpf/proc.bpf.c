// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * proc: process facts for daemon/layers' identity cache.
 *
 *  - sched/sched_process_exec: a process replaced its program. The key (tgid, leader
 *    start time) does not change on exec, so the cache must hear about it.
 *  - sched/sched_process_exit: the thread-group leader exited (other threads' exits are
 *    dropped in the kernel).
 *  - syscalls/sys_exit_{openat,openat2,open}: a successful read-only open of a file
 *    whose name ends in ".wasm". The test runs at exit, on the opened file itself (its
 *    f_mode and its dentry's name), so user space only ever hears of the rare .wasm opens
 *    and no entry hook is needed.
 *
 * Cost per open on the node: the exit tracepoint, the fd table → file → dentry reads and
 * a 5-byte compare of the name's end (no copy of the user's path string). The name is
 * the file's own: a symlink "x.wasm" to a file named otherwise is not a .wasm open, a
 * link to "m.wasm" is.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "proc.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space between open and load. */
const volatile __u32 self_tgid = 0;   /* the daemon: it opens modules to read their imports */
const volatile __u32 target_tgid = 0; /* 0: every process */

/* Ring buffer of struct proc_fact (header only for exec/exit, header + PROC_MAX_PATH
 * for .wasm opens). Written here, read by daemon/probes/proc_probe. Size set at load. */
struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Per-CPU counters indexed by enum proc_counter; summed by user space. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, PROC_CNT_MAX);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

/* Scratch for the path walk (too big for the 512-byte stack). Twice
 * PROC_MAX_PATH so that a masked offset plus a bounded length always stays inside the
 * value for the verifier. */
#define PATH_BUF (PROC_MAX_PATH * 2)
struct path_buf {
  char s[PATH_BUF];
};
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct path_buf);
} scratch SEC(".maps");

static __always_inline void count(__u32 idx) {
  __u64 *v = bpf_map_lookup_elem(&counters, &idx);
  if (v) *v += 1;
}

static __always_inline bool traced(__u32 tgid) {
  if (tgid == self_tgid) return false;
  if (target_tgid && tgid != target_tgid) return false;
  return true;
}

static __always_inline void fill_header(struct proc_fact *ev, __u8 kind) {
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  ev->ts_ns = bpf_ktime_get_ns();
  ev->proc_start_ns = BPF_CORE_READ(task, group_leader, start_time);
  ev->tgid = pid_tgid >> 32;
  ev->tid = (__u32)pid_tgid;
  ev->ret = 0;
  ev->path_len = 0;
  ev->kind = kind;
  ev->path_resolved = 0;
  ev->mnt_ns = 0;
  bpf_get_current_comm(ev->comm, sizeof(ev->comm));
  struct task_struct *parent = BPF_CORE_READ(task, real_parent);
  ev->ppid = BPF_CORE_READ(parent, tgid);
  ev->parent_start_ns = BPF_CORE_READ(parent, group_leader, start_time);
}

static __always_inline int emit_small(__u8 kind) {
  struct proc_fact *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
  if (!ev) {
    count(PROC_CNT_RINGBUF_DROPS);
    return 0;
  }
  fill_header(ev, kind);
  bpf_ringbuf_submit(ev, 0);
  return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int handle_exec(void *ctx) {
  if (!traced(bpf_get_current_pid_tgid() >> 32)) return 0;
  return emit_small(PROC_EXEC);
}

SEC("tracepoint/sched/sched_process_exit")
int handle_exit(void *ctx) {
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  if ((__u32)pid_tgid != (__u32)(pid_tgid >> 32)) return 0; /* a thread, not the process */
  if (!traced(pid_tgid >> 32)) return 0;
  return emit_small(PROC_EXIT);
}

/* include/linux/fs.h values (macros, not in vmlinux.h). An O_PATH file has neither. */
#define FMODE_READ 0x1
#define FMODE_WRITE 0x2

/* The current task's open file behind fd, or NULL. */
static __always_inline struct file *fd_file(int fd) {
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
  if (!fdt || fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds)) return NULL;
  struct file **fds = BPF_CORE_READ(fdt, fd);
  struct file *file = NULL;
  if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd])) return NULL;
  return file;
}

/* The opened file's path as its process sees it (up to the root of its mount
 * namespace), built by walking dentries and mounts backwards into b->s[0..PROC_MAX_PATH).
 * User space could only rebuild a relative or dirfd-relative path from /proc while the
 * process lives; a Wasm host serving one request may be gone by then. Returns the length
 * and sets *start, or -1 (too deep, too long, or not found). */
#define PATH_DEPTH 40
static __always_inline long file_path(struct file *file, struct path_buf *b, __u32 *start) {
  struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
  struct vfsmount *vfsmnt = BPF_CORE_READ(file, f_path.mnt);
  struct mount *mnt = container_of(vfsmnt, struct mount, mnt);
  __u32 off = PROC_MAX_PATH;
  bool done = false;
  for (int i = 0; i < PATH_DEPTH; i++) {
    struct dentry *mnt_root = BPF_CORE_READ(mnt, mnt.mnt_root);
    struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
    if (dentry == mnt_root || dentry == parent) {
      struct mount *mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
      if (dentry != mnt_root || mnt == mnt_parent) {
        done = true; /* the namespace's root (or a detached tree's) */
        break;
      }
      dentry = BPF_CORE_READ(mnt, mnt_mountpoint); /* cross into the parent mount */
      mnt = mnt_parent;
      continue;
    }
    __u32 len = BPF_CORE_READ(dentry, d_name.len);
    const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
    if (len == 0 || len >= PROC_MAX_PATH || len + 1 > off) return -1;
    off -= len + 1;
    off &= PROC_MAX_PATH - 1;
    if (bpf_probe_read_kernel(&b->s[(off + 1) & (PROC_MAX_PATH - 1)], len & (PROC_MAX_PATH - 1),
                              name))
      return -1;
    b->s[off & (PROC_MAX_PATH - 1)] = '/';
    dentry = parent;
  }
  if (!done || off >= PROC_MAX_PATH) return -1; /* too deep, or the root itself */
  *start = off;
  return PROC_MAX_PATH - off;
}

static __always_inline __u32 mnt_ns_of_current(void) {
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  return BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
}

static __always_inline int exit_open(long ret) {
  if (ret < 0) return 0; /* a failed open loads nothing */
  if (!traced(bpf_get_current_pid_tgid() >> 32)) return 0;
  struct file *file = fd_file((int)ret);
  if (!file) return 0;
  /* A loader reads its module; writing one (a compiler, a download) loads nothing. */
  unsigned int mode = BPF_CORE_READ(file, f_mode);
  if (!(mode & FMODE_READ) || (mode & FMODE_WRITE)) return 0;
  struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
  __u32 len = BPF_CORE_READ(dentry, d_name.len);
  if (len < 6 || len > 255) return 0; /* at least one byte before ".wasm"; NAME_MAX */
  const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
  char tail[5];
  if (bpf_probe_read_kernel(tail, sizeof(tail), name + len - 5)) return 0;
  if (tail[0] != '.' || tail[1] != 'w' || tail[2] != 'a' || tail[3] != 's' || tail[4] != 'm') return 0;

  struct proc_fact *ev = bpf_ringbuf_reserve(&events, sizeof(*ev) + PROC_MAX_PATH, 0);
  if (!ev) {
    count(PROC_CNT_RINGBUF_DROPS);
    return 0;
  }
  fill_header(ev, PROC_WASM_OPEN);
  ev->ret = (__s32)ret;
  ev->mnt_ns = mnt_ns_of_current();
  __u32 zero = 0, start = 0;
  struct path_buf *b = bpf_map_lookup_elem(&scratch, &zero);
  long plen = b ? file_path(file, b, &start) : -1;
  if (b && plen > 0 && plen < PROC_MAX_PATH &&
      !bpf_probe_read_kernel(ev->path, plen & (PROC_MAX_PATH - 1), &b->s[start & (PROC_MAX_PATH - 1)])) {
    ev->path_len = (__u16)plen;
    ev->path_resolved = 1;
  } else {
    /* Deeper or longer than the walk reaches: the file's own name (path_resolved 0). */
    if (!bpf_probe_read_kernel(ev->path, len & 255, name)) ev->path_len = (__u16)(len & 255);
  }
  bpf_ringbuf_submit(ev, 0);
  return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int exit_openat(struct trace_event_raw_sys_exit *ctx) { return exit_open(ctx->ret); }

SEC("tracepoint/syscalls/sys_exit_openat2")
int exit_openat2(struct trace_event_raw_sys_exit *ctx) { return exit_open(ctx->ret); }

/* open(2) exists on x86-64 but not on arm64: user space disables this when the
 * tracepoint is missing. */
SEC("tracepoint/syscalls/sys_exit_open")
int exit_open_legacy(struct trace_event_raw_sys_exit *ctx) { return exit_open(ctx->ret); }
