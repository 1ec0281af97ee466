/*
 * registry.c - node names interned to dense ids.
 *
 * Registration takes the session lock (it is not the hot path); lookups of
 * an id's name are lock-free because a name is published before the count
 * that makes its id valid, and names never move or change afterwards.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static uint32_t registry_hash(const char *s, size_t n) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < n; i++) {
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  }
  return h;
}

int kfm__registry_init(kfm_session_t *s) {
  uint32_t cap = 16;
  while (cap < 2 * s->node_cap) {
    cap <<= 1;
  }
  s->names = calloc(s->node_cap, sizeof *s->names);
  s->hash = calloc(cap, sizeof *s->hash);
  s->hash_mask = cap - 1;
  return s->names && s->hash ? 0 : KFM_ENOMEM;
}

void kfm__registry_free(kfm_session_t *s) {
  if (s->names) {
    for (uint32_t i = 0; i < atomic_load(&s->nnodes); i++) {
      free(s->names[i]);
    }
  }
  free(s->names);
  free(s->hash);
}

/* Finds name under s->lock: 1 with *id set, or 0 with *slot at the empty
 * hash entry where it would go. */
static int registry_find(kfm_session_t *s, const char *name, uint32_t h, kfm_node_id_t *id,
                         uint32_t *slot) {
  uint32_t i = h & s->hash_mask;
  for (;; i = (i + 1) & s->hash_mask) {
    uint32_t e = s->hash[i];
    if (e == 0) {
      *slot = i;
      return 0;
    }
    if (strcmp(s->names[e - 1], name) == 0) {
      *id = e - 1;
      return 1;
    }
  }
}

/* Names are kept whole: one over KFM_NAME_MAX is refused, never cut, since
 * two long names cut to the same bytes would silently become one node. */
static int registry_check_name(kfm_session_t *s, const char *name, size_t *len) {
  if (name == NULL) {
    return kfm__err(s, KFM_ENAME, "node name is NULL");
  }
  size_t n = strlen(name);
  if (n == 0) {
    return kfm__err(s, KFM_ENAME, "node name is empty (length must be 1 to %d bytes)",
                    KFM_NAME_MAX);
  }
  if (n > KFM_NAME_MAX) {
    return kfm__err(s, KFM_ENAME,
                    "node name '%.40s...' is too long: %zu bytes, over the limit of %d bytes "
                    "(KFM_NAME_MAX)",
                    name, n, KFM_NAME_MAX);
  }
  *len = n;
  return 0;
}

int kfm_node_register(kfm_session_t *s, const char *name, kfm_node_id_t *id) {
  if (s == NULL) {
    return KFM_EINVAL;
  }
  if (id == NULL) {
    return kfm__err(s, KFM_EINVAL, "register: id is NULL");
  }
  size_t n = 0; /* set by registry_check_name; gcc -O3 cannot see it */
  int rc = registry_check_name(s, name, &n);
  if (rc) {
    return rc;
  }
  uint32_t h = registry_hash(name, n), i;
  pthread_mutex_lock(&s->lock);
  if (registry_find(s, name, h, id, &i)) {
    pthread_mutex_unlock(&s->lock);
    return 0;
  }
  uint32_t nn = atomic_load_explicit(&s->nnodes, memory_order_relaxed);
  if (nn >= s->cfg.max_nodes) {
    /* Past the limit, names share the node "(other)" (registered once in
     * the slot kept for it), so a caller that goes on anyway loses no time
     * from the profile; the error still tells it the name has no node. */
    if (!registry_find(s, KFM_NODE_OTHER, registry_hash(KFM_NODE_OTHER, strlen(KFM_NODE_OTHER)),
                       id, &i)) {
      char *other = strdup(KFM_NODE_OTHER);
      if (other == NULL) {
        pthread_mutex_unlock(&s->lock);
        return KFM_ENOMEM;
      }
      s->names[nn] = other;
      s->hash[i] = nn + 1;
      atomic_store_explicit(&s->nnodes, nn + 1, memory_order_release);
      *id = nn;
    }
    pthread_mutex_unlock(&s->lock);
    return kfm__err(s, KFM_EFULL,
                    "node registry full at %u nodes registering '%s' (raise max_nodes); its id "
                    "is that of '" KFM_NODE_OTHER "', which counts every name past the limit",
                    s->cfg.max_nodes, name);
  }
  char *copy = malloc(n + 1);
  if (copy == NULL) {
    pthread_mutex_unlock(&s->lock);
    return KFM_ENOMEM;
  }
  memcpy(copy, name, n + 1);
  s->names[nn] = copy;
  s->hash[i] = nn + 1;
  atomic_store_explicit(&s->nnodes, nn + 1, memory_order_release);
  pthread_mutex_unlock(&s->lock);
  *id = nn;
  return 0;
}

const char *kfm_node_name(const kfm_session_t *s, kfm_node_id_t id) {
  if (s == NULL || id >= atomic_load_explicit(&s->nnodes, memory_order_acquire)) {
    return NULL;
  }
  return s->names[id];
}

int kfm_enter_name(kfm_session_t *s, const char *name) {
  kfm_node_id_t id;
  int rc = kfm_node_register(s, name, &id);
  return rc ? rc : kfm_enter(s, id);
}

int kfm_exit_name(kfm_session_t *s, const char *name) {
  /* Look up only: exiting a name never entered must not register it. */
  if (s == NULL) {
    return KFM_EINVAL;
  }
  size_t n = 0; /* set by registry_check_name; gcc -O3 cannot see it */
  int rc = registry_check_name(s, name, &n);
  if (rc) {
    return rc;
  }
  kfm_node_id_t id;
  uint32_t slot;
  pthread_mutex_lock(&s->lock);
  int found = registry_find(s, name, registry_hash(name, n), &id, &slot);
  pthread_mutex_unlock(&s->lock);
  if (!found) {
    return kfm__err(s, KFM_ENOTENTERED, "exit('%s'): no node of that name was ever entered", name);
  }
  return kfm_exit(s, id);
}
