#ifndef CWARREN_SHIM_H
#define CWARREN_SHIM_H
int cwarren_placeholder(void);
#endif
