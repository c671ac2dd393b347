/* Shared inside src/train/: run-directory helpers used by the trainer. */
#ifndef TFM_TRAIN_INTERNAL_H
#define TFM_TRAIN_INTERNAL_H

#include "tfm/train.h"

/* Checks the run directory before anything is allocated and creates it:
 * a fresh run refuses one that holds checkpoints; with resume and no
 * checkpoint, *fresh_restart = 1 when the directory is empty or holds a run
 * of the same configuration (o->config_text against its config.txt), else an
 * error naming the setting that differs or the foreign file. */
int tfm_run_check_dir(const tfm_train_opts *o, int *fresh_restart, int create);
/* Takes the run directory's advisory lock (DIR/.lock) into tr->lock_fd for
 * the trainer's lifetime; an error naming the holder's pid when another
 * process holds it. */
int tfm_run_lock(tfm_trainer *tr);
/* Releases the lock tfm_run_lock took for tr (nothing if none). */
void tfm_run_unlock(tfm_trainer *tr);
/* train.log, metrics.csv (header written through when new, put back when
 * a resumed file lacks it), config.txt. Resuming, *changed receives the
 * settings that differ from the config.txt before ("key was X, now Y; ...",
 * malloc'd), or NULL when none do (or there was none to read). */
int tfm_run_open_files(tfm_trainer *tr, int resuming, char **changed);
/* Removes temporary files of interrupted checkpoint writes; returns how many. */
int64_t tfm_run_remove_temporaries(const char *dir);

/* The state a checkpoint keeps beside the weights: Adam's moments, then
 * the weight average with o.ema ("ema"). */
tfm_state_block *tfm_trainer_state_blocks(tfm_trainer *tr, int *n);

/* A programmer error: the trainer was never initialised, or was freed */
#define TFM_TRAINER_CHECK(tr, fn)                                                                  \
    TFM_ASSERT((tr) && (tr)->params && (tr)->source,                                               \
               fn ": the trainer is not initialised (tfm_trainer_init)")

#endif
