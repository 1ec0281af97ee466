! kfm.f90 - the Fortran module over kfm's C API (iso_c_binding): "use kfm".
!
! Sessions are opaque handles (type(kfm_session)); node names are Fortran
! strings (trailing blanks are trimmed, as a fixed-length variable has them).
! Functions return the C API's codes: 0 on success, a negative KFM_E* code
! otherwise; kfm_errmsg(s) gives the message naming the bad value.
!
!   use kfm
!   type(kfm_session) :: s
!   integer(c_int32_t) :: id
!   rc = kfm_create(s, "level=basic,output=prof.%r.json")
!   rc = kfm_start(s)
!   rc = kfm_register(s, "solve", id)
!   rc = kfm_enter(s, id) ; ... ; rc = kfm_exit(s, id)
!   rc = kfm_stop(s)          ! writes output=
!   call kfm_destroy(s)
!
! Under "kfm run", kfm_default(s) gives the session the run profiles with,
! so a Fortran program's own nodes join the whole-program profile.
module kfm
  use, intrinsic :: iso_c_binding
  implicit none
  private

  type, public :: kfm_session
    type(c_ptr) :: p = c_null_ptr
  end type kfm_session

  !> Per-node statistics (kfm_node_stats_t), as kfm_node_stats returns them.
  type, public, bind(c) :: kfm_node_stats_c
    integer(c_int32_t) :: id
    type(c_ptr) :: name
    integer(c_int64_t) :: count, active
    real(c_double) :: total_ns, exclusive_ns
    real(c_double) :: min_ns, max_ns, mean_ns, stddev_ns
    real(c_double) :: p50_ns, p90_ns, p99_ns
    integer(c_int64_t) :: samples, samples_any
    integer(c_int32_t) :: ncpus
    type(c_ptr) :: cpu_samples
    integer(c_int64_t) :: migrations
    real(c_double) :: peak_rss
    type(c_ptr) :: sampled, inclusive, exclusive
  end type kfm_node_stats_c

  integer(c_int), parameter, public :: KFM_OK = 0, KFM_EORDER = -9, KFM_ENOTENTERED = -8, &
                                       KFM_EBADVALUE = -5, KFM_ENONODE = -6

  public :: kfm_create, kfm_start, kfm_stop, kfm_destroy, kfm_register, kfm_enter, kfm_exit, &
            kfm_enter_name, kfm_exit_name, kfm_export, kfm_errmsg, kfm_default, kfm_node_stats

  interface
    integer(c_int) function c_create_str(out, config) bind(c, name="kfm_session_create_str")
      import :: c_int, c_ptr, c_char
      type(c_ptr), intent(out) :: out
      character(kind=c_char), dimension(*), intent(in) :: config
    end function
    integer(c_int) function c_start(s) bind(c, name="kfm_session_start")
      import :: c_int, c_ptr
      type(c_ptr), value :: s
    end function
    integer(c_int) function c_stop(s) bind(c, name="kfm_session_stop")
      import :: c_int, c_ptr
      type(c_ptr), value :: s
    end function
    subroutine c_destroy(s) bind(c, name="kfm_session_destroy")
      import :: c_ptr
      type(c_ptr), value :: s
    end subroutine
    type(c_ptr) function c_default() bind(c, name="kfm_session_default")
      import :: c_ptr
    end function
    integer(c_int) function c_register(s, name, id) bind(c, name="kfm_node_register")
      import :: c_int, c_ptr, c_char, c_int32_t
      type(c_ptr), value :: s
      character(kind=c_char), dimension(*), intent(in) :: name
      integer(c_int32_t), intent(out) :: id
    end function
    integer(c_int) function c_enter(s, id) bind(c, name="kfm_enter")
      import :: c_int, c_ptr, c_int32_t
      type(c_ptr), value :: s
      integer(c_int32_t), value :: id
    end function
    integer(c_int) function c_exit(s, id) bind(c, name="kfm_exit")
      import :: c_int, c_ptr, c_int32_t
      type(c_ptr), value :: s
      integer(c_int32_t), value :: id
    end function
    integer(c_int) function c_enter_name(s, name) bind(c, name="kfm_enter_name")
      import :: c_int, c_ptr, c_char
      type(c_ptr), value :: s
      character(kind=c_char), dimension(*), intent(in) :: name
    end function
    integer(c_int) function c_exit_name(s, name) bind(c, name="kfm_exit_name")
      import :: c_int, c_ptr, c_char
      type(c_ptr), value :: s
      character(kind=c_char), dimension(*), intent(in) :: name
    end function
    integer(c_int) function c_export(s, path) bind(c, name="kfm_session_export")
      import :: c_int, c_ptr, c_char
      type(c_ptr), value :: s
      character(kind=c_char), dimension(*), intent(in) :: path
    end function
    type(c_ptr) function c_errmsg(s) bind(c, name="kfm_errmsg")
      import :: c_ptr
      type(c_ptr), value :: s
    end function
    integer(c_int) function c_report(s, r) bind(c, name="kfm_session_report")
      import :: c_int, c_ptr
      type(c_ptr), value :: s
      type(c_ptr), intent(out) :: r
    end function
    subroutine c_report_free(r) bind(c, name="kfm_report_free")
      import :: c_ptr
      type(c_ptr), value :: r
    end subroutine
    integer(c_int) function c_node_by_name(r, name, out) bind(c, name="kfm_report_node_by_name")
      import :: c_int, c_ptr, c_char, kfm_node_stats_c
      type(c_ptr), value :: r
      character(kind=c_char), dimension(*), intent(in) :: name
      type(kfm_node_stats_c), intent(out) :: out
    end function
    integer(c_size_t) function c_strlen(p) bind(c, name="strlen")
      import :: c_size_t, c_ptr
      type(c_ptr), value :: p
    end function
  end interface

contains

  ! A C string from a Fortran one, trailing blanks trimmed.
  pure function cstr(s) result(c)
    character(len=*), intent(in) :: s
    character(kind=c_char, len=len_trim(s) + 1) :: c
    c = trim(s)//c_null_char
  end function

  integer function kfm_create(s, config) result(rc)
    type(kfm_session), intent(out) :: s
    character(len=*), intent(in) :: config
    rc = c_create_str(s%p, cstr(config))
  end function

  integer function kfm_start(s) result(rc)
    type(kfm_session), intent(in) :: s
    rc = c_start(s%p)
  end function

  integer function kfm_stop(s) result(rc)
    type(kfm_session), intent(in) :: s
    rc = c_stop(s%p)
  end function

  subroutine kfm_destroy(s)
    type(kfm_session), intent(inout) :: s
    call c_destroy(s%p)
    s%p = c_null_ptr
  end subroutine

  !> The session "kfm run" profiles the program with; .false. when none.
  logical function kfm_default(s) result(found)
    type(kfm_session), intent(out) :: s
    s%p = c_default()
    found = c_associated(s%p)
  end function

  integer function kfm_register(s, name, id) result(rc)
    type(kfm_session), intent(in) :: s
    character(len=*), intent(in) :: name
    integer(c_int32_t), intent(out) :: id
    rc = c_register(s%p, cstr(name), id)
  end function

  integer function kfm_enter(s, id) result(rc)
    type(kfm_session), intent(in) :: s
    integer(c_int32_t), intent(in) :: id
    rc = c_enter(s%p, id)
  end function

  integer function kfm_exit(s, id) result(rc)
    type(kfm_session), intent(in) :: s
    integer(c_int32_t), intent(in) :: id
    rc = c_exit(s%p, id)
  end function

  integer function kfm_enter_name(s, name) result(rc)
    type(kfm_session), intent(in) :: s
    character(len=*), intent(in) :: name
    rc = c_enter_name(s%p, cstr(name))
  end function

  integer function kfm_exit_name(s, name) result(rc)
    type(kfm_session), intent(in) :: s
    character(len=*), intent(in) :: name
    rc = c_exit_name(s%p, cstr(name))
  end function

  integer function kfm_export(s, path) result(rc)
    type(kfm_session), intent(in) :: s
    character(len=*), intent(in) :: path
    rc = c_export(s%p, cstr(path))
  end function

  !> The detail of the last error on s (of the last failed kfm_create when
  !> s was never created).
  function kfm_errmsg(s) result(msg)
    type(kfm_session), intent(in) :: s
    character(len=:), allocatable :: msg
    type(c_ptr) :: p
    character(kind=c_char), pointer :: chars(:)
    integer :: i, n
    p = c_errmsg(s%p)
    n = int(c_strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate (character(len=n) :: msg)
    do i = 1, n
      msg(i:i) = chars(i)
    end do
  end function

  !> Statistics of the node called name, from a snapshot of s.
  integer function kfm_node_stats(s, name, st) result(rc)
    type(kfm_session), intent(in) :: s
    character(len=*), intent(in) :: name
    type(kfm_node_stats_c), intent(out) :: st
    type(c_ptr) :: r
    rc = c_report(s%p, r)
    if (rc /= 0) return
    rc = c_node_by_name(r, cstr(name), st)
    call c_report_free(r)
  end function
end module kfm
