// Public header of siesta::train: tasks, objectives, schedule, checkpoints, the trainer.
#pragma once

#include "siesta/train/checkpoint_file.hpp"
#include "siesta/train/error.hpp"
#include "siesta/train/loss.hpp"
#include "siesta/train/rng.hpp"
#include "siesta/train/schedule.hpp"
#include "siesta/train/task.hpp"
#include "siesta/train/tokenizer.hpp"
#include "siesta/train/batch.hpp"
#include "siesta/train/train_state.hpp"
#include "siesta/train/trainer.hpp"
