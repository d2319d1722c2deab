/* libcrypt (libxcrypt): crypt_rn checks bcrypt ("$2y$", "$2b$") password hashes. */
#ifndef PBS_STANDBY_CRYPT_SHIM_H
#define PBS_STANDBY_CRYPT_SHIM_H
#include <crypt.h>
static inline int pbs_crypt_data_size(void) { return (int) sizeof(struct crypt_data); }
#endif
