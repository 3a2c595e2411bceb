// The access rule; see access.hpp for what each class may assume.
#include "stfs/source/access.hpp"

#include <cstring>

namespace stfs {
namespace {

// Tags of the xattr form of an ACL (linux/posix_acl_xattr.h).
constexpr std::uint16_t kUserObj = 0x01, kUser = 0x02, kGroupObj = 0x04, kGroup = 0x08,
                        kMask = 0x10, kOther = 0x20;
constexpr std::uint32_t kAclVersion = 2;

std::uint32_t le(const char* p, int n) {
  std::uint32_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// The ACL of `obj`, or the one its mode implies.
Acl effective_acl(const AccessSubject& obj) {
  if (obj.acl) {
    Acl a = *obj.acl;
    a.user_obj = (obj.mode >> 6) & 7;  // the mode is authoritative for these two
    a.other = obj.mode & 7;
    return a;
  }
  Acl a;
  a.user_obj = (obj.mode >> 6) & 7;
  a.group_obj = (obj.mode >> 3) & 7;
  a.other = obj.mode & 7;
  return a;
}

// The least access of a reader that is not the object's owner and matches no
// named user entry, given which group entries it surely matches (`member`,
// if known) and which it surely does not (`not_member`, if known).
unsigned group_part(const AccessSubject& obj, const Acl& a, std::optional<gid_t> member,
                    std::optional<gid_t> not_member) {
  // Entries it surely matches: it gets at least their union.
  unsigned sure = 0;
  bool matched = false;
  if (member) {
    if (obj.gid == *member) sure |= a.group_obj & a.mask, matched = true;
    for (const Acl::Named& n : a.named) {
      if (!n.is_user && n.id == *member) sure |= n.perm & a.mask, matched = true;
    }
  }
  if (matched) return sure;
  // Otherwise it may match any one group entry it is not known to miss, or
  // none (then "other" applies): the least of those.
  unsigned least = a.other;
  if (!not_member || obj.gid != *not_member) least &= a.group_obj & a.mask;
  for (const Acl::Named& n : a.named) {
    if (!n.is_user && (!not_member || n.id != *not_member)) least &= n.perm & a.mask;
  }
  return least;
}

// The least access of a reader whose uid is anything but `owner` (and not
// root): it may be the object's owner or any named user too.
unsigned unknown_uid(const AccessSubject& obj, const Acl& a, uid_t owner, unsigned groups) {
  unsigned least = groups;
  if (obj.uid != owner && obj.uid != 0) least &= a.user_obj;
  for (const Acl::Named& n : a.named) {
    if (n.is_user && n.id != owner && n.id != 0) least &= n.perm & a.mask;
  }
  return least;
}

}  // namespace

std::optional<Acl> parse_acl_xattr(std::string_view v) {
  if (v.size() < 4 || (v.size() - 4) % 8 != 0 || le(v.data(), 4) != kAclVersion) {
    return std::nullopt;
  }
  Acl a;
  bool mask = false;
  for (std::size_t i = 4; i < v.size(); i += 8) {
    const auto tag = static_cast<std::uint16_t>(le(v.data() + i, 2));
    const unsigned perm = le(v.data() + i + 2, 2) & 7;
    const std::uint32_t id = le(v.data() + i + 4, 4);
    switch (tag) {
      case kUserObj: a.user_obj = perm; break;
      case kGroupObj: a.group_obj = perm; break;
      case kOther: a.other = perm; break;
      case kMask: a.mask = perm, mask = true; break;
      case kUser: a.named.push_back({true, id, perm}); break;
      case kGroup: a.named.push_back({false, id, perm}); break;
      default: return std::nullopt;
    }
  }
  // The kernel requires a mask whenever there are named entries.
  if (!a.named.empty() && !mask) return std::nullopt;
  return a;
}

ClassAccess least_access(const AccessSubject& obj, uid_t owner, gid_t group) {
  ClassAccess c;
  if (obj.acl_unknown) {
    // Only the owner's own bits are certain.
    c.owner = obj.uid == owner ? (obj.mode >> 6) & 7 : owner == 0 ? 7 : 0;
    return c;
  }
  const Acl a = effective_acl(obj);
  // Owner class: the reader is `owner`, with unknown groups.
  if (obj.uid == owner) {
    c.owner = a.user_obj;
  } else if (owner == 0) {
    c.owner = 7;  // root is never refused
  } else {
    bool named = false;
    for (const Acl::Named& n : a.named) {
      if (n.is_user && n.id == owner) c.owner = n.perm & a.mask, named = true;
    }
    if (!named) c.owner = group_part(obj, a, std::nullopt, std::nullopt);
  }
  c.group = unknown_uid(obj, a, owner, group_part(obj, a, group, std::nullopt));
  c.other = unknown_uid(obj, a, owner, group_part(obj, a, std::nullopt, group));
  return c;
}

mode_t presented_mode(const AccessSubject& target, std::span<const AccessSubject> walked) {
  ClassAccess own = least_access(target, target.uid, target.gid);
  for (const AccessSubject& d : walked) {
    ClassAccess s = least_access(d, target.uid, target.gid);
    if (!(s.owner & 1)) own.owner = 0;
    if (!(s.group & 1)) own.group = 0;
    if (!(s.other & 1)) own.other = 0;
  }
  return static_cast<mode_t>(own.owner << 6 | own.group << 3 | own.other);
}

}  // namespace stfs
