/* version.h - kfm library and export-schema versions. */
#ifndef KFM_VERSION_H
#define KFM_VERSION_H

#define KFM_VERSION_MAJOR 0
#define KFM_VERSION_MINOR 1
#define KFM_VERSION_PATCH 0
#define KFM_VERSION_STRING "0.1.0"
#define KFM_VERSION_HEX ((KFM_VERSION_MAJOR << 16) | (KFM_VERSION_MINOR << 8) | KFM_VERSION_PATCH)

/** Version of the JSON export's layout ("schema_version" in every export). */
#define KFM_SCHEMA_VERSION 1

#endif /* KFM_VERSION_H */
