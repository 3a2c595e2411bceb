// alignfs: a read-only FUSE passthrough of one folder (test helper) that
// refuses O_DIRECT reads not aligned to 512 bytes with EINVAL, as a FUSE
// filesystem that hands O_DIRECT on to ext4 or XFS does. stfs reads FUSE
// sources with O_DIRECT and must fall back to buffered reads here.
//
//   alignfs SOURCE_DIR MOUNTPOINT [fuse options, e.g. -f]
#define FUSE_USE_VERSION 35
#include <dirent.h>
#include <fcntl.h>
#include <fuse.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdint>
#include <cstdlib>

namespace {

char source[PATH_MAX];

void full_path(char* out, const char* path) { std::snprintf(out, PATH_MAX, "%s%s", source, path); }

int af_getattr(const char* path, struct stat* st, struct fuse_file_info* fi) {
  (void)fi;
  char p[PATH_MAX];
  full_path(p, path);
  return lstat(p, st) == 0 ? 0 : -errno;
}

int af_readdir(const char* path, void* buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info* fi, enum fuse_readdir_flags flags) {
  (void)off;
  (void)fi;
  (void)flags;
  char p[PATH_MAX];
  full_path(p, path);
  DIR* d = opendir(p);
  if (!d) return -errno;
  while (dirent* e = readdir(d)) fill(buf, e->d_name, nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
  closedir(d);
  return 0;
}

int af_open(const char* path, struct fuse_file_info* fi) {
  if ((fi->flags & O_ACCMODE) != O_RDONLY) return -EROFS;
  char p[PATH_MAX];
  full_path(p, path);
  int fd = open(p, O_RDONLY);
  if (fd < 0) return -errno;
  fi->fh = static_cast<std::uint64_t>(fd);
  return 0;
}

int af_read(const char* path, char* buf, size_t size, off_t off,
                   struct fuse_file_info* fi) {
  (void)path;
  if ((fi->flags & O_DIRECT) && (off % 512 != 0 || size % 512 != 0)) return -EINVAL;
  ssize_t n = pread(static_cast<int>(fi->fh), buf, size, off);
  return n < 0 ? -errno : static_cast<int>(n);
}

int af_release(const char* path, struct fuse_file_info* fi) {
  (void)path;
  close(static_cast<int>(fi->fh));
  return 0;
}

fuse_operations make_ops() {
  fuse_operations ops{};
  ops.getattr = af_getattr;
  ops.open = af_open;
  ops.read = af_read;
  ops.release = af_release;
  ops.readdir = af_readdir;
  return ops;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || !realpath(argv[1], source)) {
    std::fprintf(stderr, "usage: alignfs SOURCE_DIR MOUNTPOINT [fuse options]\n");
    return 2;
  }
  // fuse_main takes the mountpoint and options; drop SOURCE_DIR.
  argv[1] = argv[0];
  const fuse_operations ops = make_ops();
  return fuse_main(argc - 1, argv + 1, &ops, nullptr);
}
