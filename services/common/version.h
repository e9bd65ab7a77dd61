// The version of longctx, reported in longctx_build_info and GetModelInfo.
#ifndef LONGCTX_SERVICES_COMMON_VERSION_H_
#define LONGCTX_SERVICES_COMMON_VERSION_H_

namespace longctx {

inline constexpr char kLongctxVersion[] = "0.1.0";

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_VERSION_H_
