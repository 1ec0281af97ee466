/*
 * session_backends.c - opening a session's backends: which it wants (the
 * config's list, or what its level uses), probing them, telling each what
 * the others provide (by role), calling open, laying out the transition and
 * sample metric vectors, and recording why each backend is on or off.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int session_wants(const kfm_session_t *s, const struct kfm__backend *b) {
  const char *want = s->cfg.backends;
  return want[0] ? (kfm__list_has(want, b->name) || (b->caps & KFM_CAP_CLOCK))
                 : b->min_level <= s->cfg.level;
}

int kfm__session_open_backends(kfm_session_t *s) {
  const char *want = s->cfg.backends;
  /* Backends learn by role what the others this session opens provide,
   * e.g. a /proc reader leaves thread CPU to counters that give CPU time. */
  unsigned provides[KFM__MAX_BACKENDS + 1] = {0}, all = 0;
  for (size_t i = 0; kfm__builtin_backends[i] && i < KFM__MAX_BACKENDS; i++) {
    const char *why;
    if (session_wants(s, kfm__builtin_backends[i]) && kfm__backend_status(i, &why)) {
      provides[i] = kfm__backend_provides(kfm__builtin_backends[i]);
      all |= provides[i];
    }
  }
  for (size_t i = 0; kfm__builtin_backends[i]; i++) {
    const struct kfm__backend *b = kfm__builtin_backends[i];
    struct kfm__bstat *st = &s->bstat[s->nbstat++];
    st->name = b->name;
    const char *reason;
    int wanted = session_wants(s, b);
    if (!wanted) {
      /* Not probed for it: a session that does not use a backend does not
       * load its library.  An earlier probe's answer is shown if there is one. */
      int a = kfm__backend_probed(i, &reason);
      st->available = a > 0;
      snprintf(st->reason, sizeof st->reason, "%s (not selected at level %s)",
               a < 0 ? "not probed" : reason, kfm_level_name(s->cfg.level));
      continue;
    }
    st->available = kfm__backend_status(i, &reason);
    if (!st->available) {
      snprintf(st->reason, sizeof st->reason, "%s", reason);
      continue;
    }
    if (b->abi < KFM_BACKEND_ABI_1 || b->abi > KFM_BACKEND_ABI ||
        s->nbackends >= KFM__MAX_BACKENDS) {
      snprintf(st->reason, sizeof st->reason, "backend abi %d not supported", b->abi);
      continue;
    }
    struct kfm__backend_use *u = &s->be[s->nbackends];
    u->ops = b;
    u->state = b->state_size ? calloc(1, b->state_size) : NULL;
    if (b->state_size && u->state == NULL) {
      return KFM_ENOMEM;
    }
    char err[400] = "", note[200] = "";
    struct kfm__backend_ctx ctx = {.level = s->cfg.level,
                                   .proc_root = s->cfg.proc_root,
                                   .events = s->cfg.events,
                                   .rate_hz = s->rate_hz,
                                   .provided = all & ~(i < KFM__MAX_BACKENDS ? provides[i] : 0u),
                                   .proc_reads = s->cfg.proc_reads,
                                   .errbuf = err,
                                   .errlen = sizeof err,
                                   .note = note,
                                   .notelen = sizeof note};
    int rc = b->open(u->state, &ctx);
    if (rc == 0 &&
        (s->nm + ctx.n_transition > KFM__MAX_METRICS || s->ns + ctx.n_sample > KFM__MAX_SMETRICS)) {
      kfm__backend_close(b, u->state);
      snprintf(err, sizeof err, "more than %d transition or %d sample metrics in one session",
               KFM__MAX_METRICS, KFM__MAX_SMETRICS);
      rc = KFM_EFULL;
    }
    if (rc != 0) {
      free(u->state);
      u->state = NULL;
      /* A value the user gave is wrong (an unknown event name): that is the
       * user's error to fix, not a missing device, so creation fails. */
      if (rc == KFM_EBADVALUE) {
        snprintf(s->errmsg, sizeof s->errmsg, "%s: %s", b->name, err[0] ? err : kfm_strerror(rc));
        return rc;
      }
      snprintf(st->reason, sizeof st->reason, "open failed: %s", err[0] ? err : kfm_strerror(rc));
      continue;
    }
    st->enabled = 1;
    snprintf(st->reason, sizeof st->reason, "%s%s%s", reason, note[0] ? "; " : "", note);
    if (KFM__BACKEND_HAS(b, KFM_BACKEND_ABI_2, enter)) {
      s->hook_enter[s->nhook_enter++] = (uint8_t)s->nbackends;
    }
    if (KFM__BACKEND_HAS(b, KFM_BACKEND_ABI_2, exit)) {
      s->hook_exit[s->nhook_exit++] = (uint8_t)s->nbackends;
    }
    u->t_off = s->nm;
    u->n_t = ctx.n_transition;
    u->s_off = s->ns;
    u->n_s = ctx.n_sample;
    for (unsigned m = 0; m < ctx.n_transition; m++) {
      if (kfm__backend_role(b, &ctx.transition[m]) == KFM_ROLE_RSS && s->rss_index < 0) {
        s->rss_index = (int)s->nm;
      }
      s->mrole[s->nm] = (uint8_t)kfm__backend_role(b, &ctx.transition[m]);
      s->mbackend[s->nm] = b->name;
      s->mdef[s->nm++] = &ctx.transition[m];
    }
    for (unsigned m = 0; m < ctx.n_sample; m++) {
      if (kfm__backend_role(b, &ctx.sample[m]) == KFM_ROLE_RSS && s->srss_index < 0) {
        s->srss_index = (int)s->ns;
      }
      s->sbackend[s->ns] = b->name;
      s->sdef[s->ns++] = &ctx.sample[m];
    }
    s->nbackends++;
  }
  /* Names that are known but not built: say why they are off, for those the
   * config names and, at COMPREHENSIVE (which wants every source), all. */
  char buf[sizeof s->cfg.backends];
  if (want[0] == '\0' && s->cfg.level == KFM_LEVEL_COMPREHENSIVE) {
    size_t u = 0;
    buf[0] = '\0';
    for (size_t i = 0; kfm__backend_known_name(i) && u < sizeof buf; i++) {
      int w = snprintf(buf + u, sizeof buf - u, "%s%s", u ? "," : "", kfm__backend_known_name(i));
      u += w > 0 ? (size_t)w : 0;
    }
  } else {
    memcpy(buf, want, sizeof buf);
  }
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    const char *why = kfm__backend_not_built_reason(tok);
    if (why && s->nbstat < KFM__MAX_BSTAT) {
      struct kfm__bstat *st = &s->bstat[s->nbstat++];
      st->name = NULL;
      snprintf(st->namebuf, sizeof st->namebuf, "%s", tok);
      snprintf(st->reason, sizeof st->reason, "%s", why);
    }
  }
  return 0;
}
