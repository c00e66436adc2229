#define _GNU_SOURCE
#include "cwarren.h"
int cwarren_placeholder(void) { return 0; }
