// The access rule (README "Security model", docs/DECISIONS.md): the modes a
// mount presents for a file or directory it serves, so that nobody reads
// through the mount what they could not read natively.
//
// Natively, reading a file needs search (x) on every directory that path
// resolution walks through, links included, plus read access on the file by
// its mode or POSIX ACL. The mount shows one owner, one group and nine bits,
// checked by the kernel (default_permissions). For each class of reader the
// rule presents only the access that *every* reader of that class surely has
// natively. Where that depends on facts it cannot know (a reader's
// supplementary groups, its uid within the group and other classes) it
// takes the least of the possibilities. Pure: no system calls.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace stfs {

// An extended POSIX ACL (the entries beyond the three of the mode).
struct Acl {
  struct Named {
    bool is_user;  // ACL_USER; else ACL_GROUP
    std::uint32_t id;
    unsigned perm;  // rwx as 4|2|1
  };
  unsigned user_obj = 0, group_obj = 0, other = 0;
  unsigned mask = 7;  // 7 when the ACL has no mask entry
  std::vector<Named> named;
};

// Decodes the value of the xattr system.posix_acl_access (Linux's
// little-endian format). nullopt if malformed; an ACL of only the three
// base entries is returned too (it says what the mode says).
std::optional<Acl> parse_acl_xattr(std::string_view value);

// What the rule knows of one file or directory.
struct AccessSubject {
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t mode = 0;  // permission bits (0777) are used
  std::optional<Acl> acl;
  // The ACL could not be read (an error other than "none"): only the owner
  // is known to have access.
  bool acl_unknown = false;
};

// Per class of a presented object owned by (owner, group): the least access
// (rwx as 4|2|1) any reader of that class surely has on `obj`.
//  - owner: the reader is `owner`; its groups are unknown.
//  - group: any uid but `owner`, a member of `group`, other groups unknown.
//  - other: any uid but `owner`, not a member of `group`.
// Root (uid 0) is never counted as a possible reader: it bypasses both the
// native check and the mount's.
struct ClassAccess {
  unsigned owner = 0, group = 0, other = 0;
};
ClassAccess least_access(const AccessSubject& obj, uid_t owner, gid_t group);

// The permission bits (0777) a mount presents for `target`, owned as the
// target is, reached through the directories `walked` (every directory
// path resolution searches, ancestors of links and their targets alike).
// A class keeps the target's own least access only if it may search every
// walked directory; otherwise it gets nothing.
mode_t presented_mode(const AccessSubject& target, std::span<const AccessSubject> walked);

}  // namespace stfs
